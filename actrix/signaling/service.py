"""SignalingService: the narrow facade the protocol calls, and the inbound pipeline.

The service never sees a socket. The protocol opens a :class:`Session` per
WebSocket with a :class:`Connection` (``send_bytes`` / ``close_session``), hands
it every decoded envelope, and tells it when the socket is gone. Envelopes of
one session are handled strictly in order: while one waits (credential
decryption, AIS, SQLite) the next ones queue on the session, so an SDP offer can
never overtake the ICE candidates sent after it. A handler that needs nothing
asynchronous (a relay with a cached credential) completes on the spot, without
a Deferred.

The flows live in their own modules: :mod:`.registration` (Register, URL
identity, Ping, Unregister, CredentialUpdate, expiry), :mod:`.checks` (realm,
credential and identity checks), :mod:`.directory` (Discovery, GetServiceSpec,
RouteCandidates, presence subscriptions), :mod:`.relay` (relays and role
negotiation), :mod:`.presence` (ActrUp/ActrDown events). Every flow reads and writes
registered actors only through the :class:`~actrix.core.directory.ActorDirectory`
port (:mod:`.local_directory` by default).

Safety fixes over the original (signaling.md §11): the credential's actor id
must equal ``source`` on every actor message and relay, and a relay's source
must be the actor bound to the sending socket; ACL is checked after the
credential; forwarded relays and role assignments carry an empty credential;
role negotiation's ``from``/``to`` must be the relay's source/target.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.bus import KICK, NEGOTIATE, Bus, BusMessage, LocalBus
from actrix.core.directory import (
    NODE_BEAT_INTERVAL,
    ActorDirectory,
    ActorKey,
    DirectoryUnavailable,
)
from actrix.core.interfaces import (
    Claims,
    CredentialValidator,
    IdentityIssuer,
    SignalingRealms,
)
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.checks import MessageChecks
from actrix.signaling.compat import CompatibilityCache
from actrix.signaling.context import FlowContext
from actrix.signaling.directory import Directory
from actrix.signaling.local_directory import LocalDirectory
from actrix.signaling.metrics import SignalingMetrics
from actrix.signaling.presence import PresenceEvents
from actrix.signaling.registration import MAX_ACL_PRINCIPALS, Registration
from actrix.signaling.registry import Departures
from actrix.signaling.relay import Relays
from actrix.signaling.sessions import REPLACED_CODE, Connection, Session, Sessions
from actrix.signaling.store import SignalingStore

log = Logger()

HEARTBEAT_TIMEOUT: Final = 300.0
RECONNECT_WINDOW: Final = 30.0
MAX_BACKLOG: Final = 1024  # envelopes queued behind a waiting handler
# Departed actors removed per reactor turn: after a mass disconnect the rest
# follow in later turns, so requests in between are not held up behind them.
DEPART_BATCH: Final = 100
# Departures are counted into one info line at most this often (any client
# that connects and leaves causes one; /metrics counts every removal).
DEPART_LOG_INTERVAL: Final = 60.0
CLOSE_TIMEOUT: Final = 3.0
FLUSH_INTERVAL: Final = 1.0
HEARTBEAT_SWEEP_INTERVAL: Final = 30.0
STORE_SWEEP_INTERVAL: Final = 300.0

ActorHandler = Callable[
    [Session, signaling_pb2.SignalingEnvelope, Claims], Awaitable[None]
]


class SignalingService(Service):
    """The signaling flows of signaling.md §4-§7 over abstract sessions."""

    def __init__(
        self,
        clock: IReactorTime,
        realms: SignalingRealms,
        validator: CredentialValidator,
        issuer: IdentityIssuer | None,
        store: SignalingStore | None,
        compat: CompatibilityCache,
        metrics: SignalingMetrics | None = None,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        max_acl_principals: int = MAX_ACL_PRINCIPALS,
        reconnect_window: float = RECONNECT_WINDOW,
        directory: ActorDirectory | None = None,
        bus: Bus | None = None,
    ) -> None:
        """``directory`` defaults to a :class:`LocalDirectory` over ``store``.

        ``bus`` (default: a :class:`LocalBus`) reaches actors on other nodes.
        """
        self._clock = clock
        self._departures = Departures(reconnect_window)
        self._departure_call: IDelayedCall | None = None
        self._departed_unlogged = 0
        self._departure_log_call: IDelayedCall | None = None
        self._timing = False
        self.metrics = metrics = metrics or SignalingMetrics()
        if directory is None:
            directory = LocalDirectory(clock, store)
        self.directory = directory
        directory.on_restored(self._went_offline)
        if bus is None:
            bus = LocalBus(directory.node_id)
        self._bus = bus
        bus.listen(self._on_bus, self._flush_bus_writes)
        self._bus_written: set[Session] = set()
        self._sessions = sessions = Sessions(clock, metrics)
        self._checks = MessageChecks(realms, validator, sessions)
        self._presence_events = PresenceEvents(clock, realms, sessions, directory, bus)
        context = FlowContext(
            clock=clock,
            realms=realms,
            directory=directory,
            bus=bus,
            sessions=sessions,
            presence=self._presence_events,
            metrics=metrics,
            heartbeat_timeout=heartbeat_timeout,
        )
        self._registration = registration = Registration(
            context, validator, issuer, realms, max_acl_principals
        )
        queries = Directory(context, compat)
        self._relays = Relays(context, self._checks)
        self._actor_handlers: dict[str, ActorHandler] = {
            "ping": registration.ping,
            "unregister_request": registration.unregister,
            "credential_update_request": registration.credential_update,
            "discovery_request": queries.discovery,
            "get_service_spec_request": queries.service_spec,
            "route_candidates_request": queries.route_candidates,
            "subscribe_actr_up_request": queries.subscribe,
            "unsubscribe_actr_up_request": queries.unsubscribe,
            "error": queries.client_error,
        }
        self._all_closed: Deferred[None] | None = None
        self._writes: set[Deferred[object]] = set()
        self.metrics.open_connections = sessions.__len__
        self.metrics.online_by_realm = directory.online_by_realm
        self.setName("signaling")

    # The AIS client (tests swap it).

    @property
    def _issuer(self) -> IdentityIssuer | None:
        return self._registration.issuer

    @_issuer.setter
    def _issuer(self, issuer: IdentityIssuer | None) -> None:
        self._registration.issuer = issuer

    # ------------------------------------------------------------------
    # Session lifecycle (called by the protocol)

    def open_session(
        self, connection: Connection, ip: str, webrtc_role: str | None
    ) -> Session:
        return self._sessions.open(connection, ip, webrtc_role)

    def session_for(self, key: ActorKey) -> Session | None:
        """The live session bound to an actor, if any."""
        return self._sessions.bound(key)

    async def bind_url_identity(
        self,
        session: Session,
        actr_id: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
    ) -> bool:
        """Reconnect identity (§1.1), honoured only when the token names ``actr_id``."""
        return await self._registration.bind_url_identity(session, actr_id, credential)

    def session_closed(self, session: Session) -> None:
        """The socket is gone: the actor goes offline for the reconnect window.

        Offline actors are in no answer (discovery, routes, specs, presence,
        relays); unless the actor reconnects within the window its entry
        leaves memory and SQLite.
        """
        if session.closed:
            return
        session.closed = True
        session.backlog = None
        key = self._sessions.close(session)
        if key is not None and self.directory.cached(key) is not None:
            self._spawn(self._went_away(key), "marking an actor offline")
        if not self._sessions and self._all_closed is not None:
            d, self._all_closed = self._all_closed, None
            d.callback(None)

    async def end_actor(self, key: ActorKey, code: int, reason: str, event: str) -> int:
        """Revocation: close the actor's socket here, drop its entry, ActrDown.

        The socket is unbound before it is closed, so its close does not mark
        the actor offline for a reconnect window; the entry goes at once and
        subscribers hear ``event``. An entry whose socket is on another node
        is left to that node (its own change feed ends it). Returns how many
        sockets were closed here (0 or 1).
        """
        session = self._sessions.bound(key)
        if session is not None:
            self._sessions.detach(session)
            session.connection.close_session(code, reason)
        entry = self.directory.cached(key)
        if entry is None:
            entry = await self.directory.lookup(key)
        elsewhere = (
            session is None
            and entry is not None
            and entry.online
            and entry.node not in ("", self.directory.node_id)
        )
        if entry is not None and not elsewhere:
            await self._registration.remove_actor(key, event)
        return 0 if session is None else 1

    async def end_realm(self, realm_id: int, code: int, reason: str, event: str) -> int:
        """Realm suspended: end every actor of ``realm_id`` bound here.

        Every subscriber of the realm hears ActrDown(``event``) of every other
        before the sockets close; the entries go at once. Returns how many
        sockets were closed.
        """
        doomed = [
            s for s in self._sessions if s.key is not None and s.key[0] == realm_id
        ]
        for session in doomed:
            if session.actor is not None and not session.closed:
                await self._presence_events.notify(
                    session.actor, up=False, reason=event
                )
        closed = 0
        for session in doomed:
            key = session.key
            if key is None or self._sessions.bound(key) is not session:
                continue  # gone or replaced meanwhile
            self._sessions.detach(session)
            session.connection.close_session(code, reason)
            closed += 1
            await self.directory.remove(key)
            await self.directory.forget_subscriptions(key)
        return closed

    async def _went_away(self, key: ActorKey) -> None:
        await self._presence_events.set_online(key, False, "disconnected")
        self._went_offline(key)

    def _spawn(self, work: Coroutine[Any, Any, object], what: str) -> None:
        """Run a directory write started by a synchronous caller; log failures.

        With the local directory it completes before this returns; a shared
        one's writes are awaited by :meth:`stopService`.
        """
        d = Deferred.fromCoroutine(work)
        d.addErrback(self._failed, what)
        if not d.called:
            self._writes.add(d)
            d.addBoth(self._written, d)

    def _written(self, result: object, d: Deferred[object]) -> None:
        self._writes.discard(d)

    # ------------------------------------------------------------------
    # Other nodes

    def _on_bus(self, message: BusMessage) -> None:
        """A message another node sent for an actor whose socket is here."""
        if message.kind == NEGOTIATE:
            self._relays.negotiated_here(message)
            return
        session = self._sessions.bound(message.key)
        if message.kind == KICK:
            if session is not None and session.id == message.session:
                self._sessions.detach(session)
                self.directory.released(message.key)
                session.connection.close_session(
                    REPLACED_CODE, "replaced by a new connection"
                )
            return
        if session is None:
            self.metrics.relays["remote_no_target"] += 1
            return
        self._bus_written.add(session)
        if message.flow:
            self._sessions.send_encoded(session, message.payload, message.flow)
            return
        envelope = signaling_pb2.SignalingEnvelope()
        envelope.ParseFromString(message.payload)
        self._sessions.send(session, envelope)

    def _flush_bus_writes(self) -> None:
        """After a read from the bus: write what it brought at once (see
        :meth:`~actrix.core.websocket.EdgeProtocol.flush_now`)."""
        written, self._bus_written = self._bus_written, set()
        for session in written:
            if not session.closed:
                session.connection.flush_now()

    async def _beat(self) -> None:
        """Stay known alive; announce the actors of nodes that died as expired."""
        gone = await self.directory.beat(self._clock.seconds())
        for entry in gone:
            if entry.online:
                await self._presence_events.notify(
                    entry.actr_id, up=False, reason="expired"
                )
            await self.directory.forget_subscriptions(entry.key)

    # ------------------------------------------------------------------
    # Reconnect window

    def _went_offline(self, key: ActorKey) -> None:
        self._departures.mark(key, self._clock.seconds())
        self._arm_departures()

    def _arm_departures(self) -> None:
        if not self._timing or self._departure_call is not None:
            return
        due = self._departures.next_due()
        if due is not None:
            delay = max(0.0, due - self._clock.seconds())
            self._departure_call = self._clock.callLater(delay, self._depart)

    def _depart(self) -> None:
        """Remove the actors whose reconnect window ended while offline."""
        self._departure_call = None
        removed = 0
        for key in self._departures.due(self._clock.seconds(), DEPART_BATCH):
            entry = self.directory.cached(key)
            if entry is None or entry.online or self._sessions.is_bound(key):
                continue
            self._spawn(
                self._registration.remove_actor(key, "disconnected"),
                "removing a disconnected actor",
            )
            removed += 1
        if removed:
            self._departed_unlogged += removed
            if self._departure_log_call is None:
                self._log_departures()
        self._arm_departures()

    def _log_departures(self) -> None:
        """One line for the departures counted since the last one, then wait
        :data:`DEPART_LOG_INTERVAL` before the next (if any come)."""
        self._departure_log_call = None
        count, self._departed_unlogged = self._departed_unlogged, 0
        if count == 0:
            return
        log.info("{count} disconnected actors removed", count=count)
        self._departure_log_call = self._clock.callLater(
            DEPART_LOG_INTERVAL, self._log_departures
        )

    # ------------------------------------------------------------------
    # Inbound pipeline

    def handle(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """Take one decoded envelope of ``session`` (in arrival order)."""
        if session.closed:
            return
        if session.backlog is not None:
            if len(session.backlog) >= MAX_BACKLOG:
                self.metrics.rejections["backlog"] += 1
                log.warn("session backlog full; closing it")
                session.connection.close_session(1008, "too many queued messages")
                return
            session.backlog.append(envelope)
            return
        if envelope.WhichOneof("flow") == "actr_relay":
            payload = envelope.actr_relay.WhichOneof("payload")
            self.metrics.messages_in[payload or "actr_relay"] += 1
            try:
                if self._relays.relay_now(session, envelope):
                    return
            except Exception:
                log.failure("while handling {flow}", flow=m.flow_name(envelope))
                return
            d = self._start(self._relays.relay(session, envelope), envelope)
        else:
            d = self._start(self._dispatch(session, envelope), envelope)
        if not d.called:
            session.backlog = deque()
            d.addCallback(lambda _: self._drain(session))

    def _start(
        self,
        work: Coroutine[Any, Any, None],
        envelope: signaling_pb2.SignalingEnvelope,
    ) -> Deferred[None]:
        d = Deferred.fromCoroutine(work)
        d.addErrback(self._handler_failed, envelope)
        return d

    def _drain(self, session: Session) -> None:
        while session.backlog:
            envelope = session.backlog.popleft()
            d = self._start(self._dispatch(session, envelope), envelope)
            if not d.called:
                d.addCallback(lambda _: self._drain(session))
                return
        session.backlog = None

    def _handler_failed(
        self, failure: Failure, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        self._failed(failure, f"handling {m.flow_name(envelope)}")

    def _failed(self, failure: Failure, what: str) -> None:
        """Log a failure once, where it ends; a Redis outage is counted only.

        The Redis client logs an outage once a minute; repeating it for every
        message that needed the shared directory meanwhile would flood the log.
        """
        if failure.check(DirectoryUnavailable):
            self.metrics.rejections["directory_unavailable"] += 1
            log.debug("{what}: {error}", what=what, error=str(failure.value))
            return
        log.failure("while {what}", failure, what=what)

    async def _dispatch(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        flow = envelope.WhichOneof("flow")
        self.metrics.messages_in[m.flow_name(envelope)] += 1
        if flow == "actr_relay":
            await self._relays.relay(session, envelope)
        elif flow == "actr_to_server":
            await self._actor_message(session, envelope)
        elif flow == "peer_to_server":
            if envelope.peer_to_server.HasField("register_request"):
                await self._registration.register(session, envelope)
            else:
                log.debug("peer_to_server without payload ignored")
        else:
            self.metrics.rejections["unexpected_flow"] += 1
            log.debug("envelope with flow {flow} ignored", flow=flow)

    async def _actor_message(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """§5.2: realm, credential and identity, then the payload's handler."""
        message = envelope.actr_to_server
        source = message.source
        if not self._checks.realm_ok(session, envelope, source):
            return
        claims = await self._checks.authenticate(
            session, envelope, source, message.credential, m.ACTOR_SOURCE_MISMATCH
        )
        if claims is None:
            return
        handler = self._actor_handlers.get(message.WhichOneof("payload") or "")
        if handler is None:
            log.debug("actr_to_server without payload ignored")
            return
        await handler(session, envelope, claims)

    def send(self, session: Session, envelope: signaling_pb2.SignalingEnvelope) -> bool:
        """Write an envelope to a session; False (and nothing else) if it is gone."""
        return self._sessions.send(session, envelope)

    # ------------------------------------------------------------------
    # Persistence and timers

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        """Spec store lookup for route negotiation; extends the spec's TTL."""
        return self.directory.client_spec(actr_type, fingerprint)

    async def sweep_heartbeats(self) -> int:
        """Drop entries silent for longer than the heartbeat timeout (§10)."""
        return await self._registration.expire()

    async def flush(self) -> None:
        """Write the pending registry and spec changes (one transaction)."""
        await self.directory.flush()

    async def sweep_store(self) -> None:
        """Delete expired stored entries and specs."""
        await self.directory.sweep()

    def timers(self) -> list[TimerService]:
        """Write-behind flush (1 s), heartbeat expiry (30 s), TTL sweep (300 s).

        With a shared directory also the node beat (1 s).
        """
        beat = []
        if self.directory.shared:
            beat = [TimerService(NODE_BEAT_INTERVAL, self._tick, self._beat, "beating")]
        return [
            *beat,
            TimerService(
                FLUSH_INTERVAL, self._tick, self.flush, "flushing the registry"
            ),
            TimerService(
                HEARTBEAT_SWEEP_INTERVAL,
                self._tick,
                self._sweep_heartbeats,
                "expiring heartbeats",
            ),
            TimerService(
                STORE_SWEEP_INTERVAL, self._tick, self.sweep_store, "sweeping the cache"
            ),
        ]

    def _tick(
        self, work: Callable[[], Coroutine[Any, Any, None]], what: str
    ) -> Deferred[None]:
        d = Deferred.fromCoroutine(work())
        d.addErrback(self._failed, what)
        return d

    async def _sweep_heartbeats(self) -> None:
        await self.sweep_heartbeats()

    def startService(self) -> None:
        super().startService()
        self._timing = True
        self._arm_departures()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._timing = False
        for call in (self._departure_call, self._departure_log_call):
            if call is not None and call.active():
                call.cancel()
        self._departure_call = self._departure_log_call = None
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._sessions:
            self._all_closed = Deferred()
            waiting = self._all_closed
            for session in self._sessions:
                session.connection.close_session(1001, "server shutting down")
            waiting.addTimeout(CLOSE_TIMEOUT, self._clock)
            try:
                await waiting
            except Exception:
                log.warn(
                    "{count} sessions did not close in time; aborting them",
                    count=len(self._sessions),
                )
                for session in self._sessions:
                    session.connection.abort()
        while self._writes:
            await next(iter(self._writes))
        await self.flush()


__all__ = ["REPLACED_CODE", "Connection", "Session", "SignalingService"]
