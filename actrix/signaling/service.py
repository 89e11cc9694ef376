"""SignalingService: sessions, the checks on every message, and the signaling flows.

The service never sees a socket. The protocol opens a :class:`Session` per
WebSocket with a :class:`Connection` (``send_bytes`` / ``close_session``), hands
it every decoded envelope, and tells it when the socket is gone. Envelopes of
one session are handled strictly in order: while one waits (credential
decryption, AIS, SQLite) the next ones queue on the session, so an SDP offer can
never overtake the ICE candidates sent after it. A handler that needs nothing
asynchronous (a relay or ping with a cached credential) completes on the spot.

Safety fixes over the original (signaling.md §11): the credential's actor id
must equal ``source`` on every actor message and relay, and a relay's source
must be the actor bound to the sending socket; ACL is checked after the
credential; forwarded relays and role assignments carry an empty credential;
role negotiation's ``from``/``to`` must be the relay's source/target.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.actrid import actr_id_repr, type_key
from actrix.core.interfaces import (
    Claims,
    CredentialError,
    CredentialValidator,
    IdentityIssuer,
    RealmDirectory,
)
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.compat import CompatibilityCache
from actrix.signaling.metrics import SignalingMetrics
from actrix.signaling.presence import Subscriptions
from actrix.signaling.registry import ActorKey, ActorRegistry, SpecIndex, spec_key
from actrix.signaling.routing import RouteEntry, route_candidates
from actrix.signaling.store import (
    REGISTRY_TTL,
    RegistryRow,
    SignalingStore,
    WriteBehind,
    row_key,
)

log = Logger()

HEARTBEAT_TIMEOUT: Final = 300.0
MAX_BACKLOG: Final = 1024  # envelopes queued behind a waiting handler
CLOSE_TIMEOUT: Final = 3.0
FLUSH_INTERVAL: Final = 1.0
HEARTBEAT_SWEEP_INTERVAL: Final = 30.0
STORE_SWEEP_INTERVAL: Final = 300.0
REPLACED_CODE: Final = 4000  # close code of a socket superseded by a reconnect
_EMPTY_CREDENTIAL = actr_pb2.AIdCredential(encrypted_token=b"", token_key_id=0)


class Connection(Protocol):
    """What the service needs from a WebSocket."""

    def send_bytes(self, data: bytes) -> bool:
        """Queue one binary message; False if the socket is no longer open."""
        ...

    def close_session(self, code: int, reason: str) -> None:
        """Start a WebSocket close handshake."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection now."""
        ...


class Session:
    """One WebSocket as the service sees it."""

    __slots__ = (
        "actor",
        "backlog",
        "closed",
        "connection",
        "credential",
        "ip",
        "key",
        "webrtc_role",
    )

    def __init__(
        self, connection: Connection, ip: str, webrtc_role: str | None
    ) -> None:
        self.connection = connection
        self.ip = ip
        self.webrtc_role = webrtc_role
        self.actor: actr_pb2.ActrId | None = None
        self.key: ActorKey | None = None
        self.credential: actr_pb2.AIdCredential | None = None
        self.backlog: deque[signaling_pb2.SignalingEnvelope] | None = None
        self.closed = False

    @property
    def answers(self) -> bool:
        return self.webrtc_role == "answer"


class SignalingService(Service):
    """The signaling flows of signaling.md §4-§7 over abstract sessions."""

    def __init__(
        self,
        clock: IReactorTime,
        realms: RealmDirectory,
        validator: CredentialValidator,
        issuer: IdentityIssuer | None,
        store: SignalingStore | None,
        compat: CompatibilityCache,
        metrics: SignalingMetrics | None = None,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    ) -> None:
        self._clock = clock
        self._realms = realms
        self._validator = validator
        self._issuer = issuer
        self._store = store
        self._compat = compat
        self.metrics = metrics or SignalingMetrics()
        self._heartbeat_timeout = heartbeat_timeout
        self.registry = ActorRegistry()
        self.specs = SpecIndex()
        self.presence = Subscriptions()
        self._sessions: set[Session] = set()
        self._bound: dict[ActorKey, Session] = {}
        self._pending = WriteBehind()
        self._flushing: Deferred[None] | None = None
        self._all_closed: Deferred[None] | None = None
        self.metrics.open_connections = lambda: len(self._sessions)
        self.metrics.online_by_realm = self.registry.online_by_realm
        self.setName("signaling")

    # ------------------------------------------------------------------
    # Session lifecycle (called by the protocol)

    def open_session(
        self, connection: Connection, ip: str, webrtc_role: str | None
    ) -> Session:
        session = Session(connection, ip, webrtc_role)
        self._sessions.add(session)
        self.metrics.connections_total += 1
        return session

    def session_for(self, key: ActorKey) -> Session | None:
        """The live session bound to an actor, if any."""
        return self._bound.get(key)

    async def bind_url_identity(
        self,
        session: Session,
        actr_id: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
    ) -> bool:
        """Reconnect identity (§1.1), honoured only when the token names ``actr_id``.

        On success any other socket of the actor is detached and closed, the
        session is bound, and the actor's registry entry (from memory or
        SQLite) comes back online. On failure nothing changes.
        """
        realm_id = actr_id.realm.realm_id
        label = actr_id_repr(actr_id)
        if self._realms.realm_problem(realm_id) is not None:
            log.info("URL identity {actor} ignored: realm unusable", actor=label)
            return False
        try:
            claims = await self._validator.validate(
                credential.encrypted_token, credential.token_key_id, realm_id
            )
        except CredentialError as e:
            self.metrics.rejections["url_identity"] += 1
            log.info(
                "URL identity {actor} ignored: {reason}", actor=label, reason=e.reason
            )
            return False
        if claims.actor_id != label:
            self.metrics.rejections["url_identity"] += 1
            log.warn(
                "URL identity {actor} ignored: token names another actor", actor=label
            )
            return False
        if session.closed or session.key is not None:
            return False
        key = m.actor_key(actr_id)
        previous = self._bound.get(key)
        if previous is not None and previous is not session:
            self._detach(previous)
            previous.connection.close_session(
                REPLACED_CODE, "replaced by a new connection"
            )
        self._bind(session, actr_id, credential)
        entry = self.registry.get(key)
        if entry is None:
            entry = await self._restore(key)
        if entry is not None and not session.closed and self._bound.get(key) is session:
            entry.last_heartbeat = self._clock.seconds()
            self._set_online(entry, True, "reconnected")
        log.info("actor {actor} reconnected", actor=label)
        return True

    def session_closed(self, session: Session) -> None:
        """The socket is gone: the actor goes offline but keeps its entry."""
        if session.closed:
            return
        session.closed = True
        session.backlog = None
        self._sessions.discard(session)
        key = session.key
        if key is not None and self._bound.get(key) is session:
            del self._bound[key]
            entry = self.registry.get(key)
            if entry is not None:
                self._set_online(entry, False, "disconnected")
        if not self._sessions and self._all_closed is not None:
            d, self._all_closed = self._all_closed, None
            d.callback(None)

    def _bind(
        self,
        session: Session,
        actr_id: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
    ) -> None:
        key = m.actor_key(actr_id)
        session.actor = actr_pb2.ActrId()
        session.actor.CopyFrom(actr_id)
        session.key = key
        session.credential = actr_pb2.AIdCredential()
        session.credential.CopyFrom(credential)
        self._bound[key] = session

    def _detach(self, session: Session) -> None:
        if session.key is not None and self._bound.get(session.key) is session:
            del self._bound[session.key]
        session.actor = None
        session.key = None
        session.credential = None

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
        d = self._start(session, envelope)
        if not d.called:
            session.backlog = deque()
            d.addCallback(lambda _: self._drain(session))

    def _start(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._dispatch(session, envelope))
        d.addErrback(self._handler_failed, envelope)
        return d

    def _drain(self, session: Session) -> None:
        while session.backlog:
            d = self._start(session, session.backlog.popleft())
            if not d.called:
                d.addCallback(lambda _: self._drain(session))
                return
        session.backlog = None

    def _handler_failed(
        self, failure: Failure, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        log.failure("while handling {flow}", failure, flow=m.flow_name(envelope))

    async def _dispatch(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        flow = envelope.WhichOneof("flow")
        self.metrics.messages_in[m.flow_name(envelope)] += 1
        if flow == "actr_relay":
            await self._relay(session, envelope)
        elif flow == "actr_to_server":
            await self._actor_message(session, envelope)
        elif flow == "peer_to_server":
            if envelope.peer_to_server.HasField("register_request"):
                await self._register(session, envelope)
            else:
                log.debug("peer_to_server without payload ignored")
        else:
            self.metrics.rejections["unexpected_flow"] += 1
            log.debug("envelope with flow {flow} ignored", flow=flow)

    # ------------------------------------------------------------------
    # Sending

    def send(self, session: Session, envelope: signaling_pb2.SignalingEnvelope) -> bool:
        """Write an envelope to a session; False (and nothing else) if it is gone."""
        if session.closed:
            return False
        if not session.connection.send_bytes(m.encode(envelope)):
            return False
        self.metrics.messages_out[m.flow_name(envelope)] += 1
        return True

    def _reply_error(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        target: actr_pb2.ActrId,
        code: int,
        message: str,
        reason: str,
    ) -> None:
        self.metrics.rejections[reason] += 1
        now = self._clock.seconds()
        self.send(
            session, m.error_to_actor(now, target, envelope.envelope_id, code, message)
        )

    # ------------------------------------------------------------------
    # §4.2 / §5.2 / §6.1 checks

    async def _authenticate(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
        mismatch_text: str,
    ) -> Claims | None:
        """Credential valid for ``source`` and ``source`` is this socket's actor."""
        try:
            claims = await self._validator.validate(
                credential.encrypted_token,
                credential.token_key_id,
                source.realm.realm_id,
            )
        except CredentialError as e:
            self._reply_error(
                session,
                envelope,
                source,
                e.code,
                m.CREDENTIAL_FAILED + e.reason,
                "credential",
            )
            return None
        if claims.actor_id != actr_id_repr(source):
            self._reply_error(session, envelope, source, 403, mismatch_text, "identity")
            return None
        if session.key is not None and session.key != m.actor_key(source):
            self._reply_error(
                session, envelope, source, 403, m.CONNECTION_MISMATCH, "connection"
            )
            return None
        return claims

    def _realm_ok(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
    ) -> bool:
        problem = self._realms.realm_problem(source.realm.realm_id)
        if problem is None:
            return True
        self._reply_error(
            session, envelope, source, 403, m.REALM_FAILED + problem, "realm"
        )
        return False

    # ------------------------------------------------------------------
    # §5.1 Register

    async def _register(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        request = envelope.peer_to_server.register_request
        rid = envelope.envelope_id
        realm_id = request.realm.realm_id
        problem = self._realms.realm_problem(realm_id)
        if problem is not None:
            self._register_failed(session, rid, 403, m.REALM_FAILED + problem, "realm")
            return
        if session.key is not None:
            self._register_failed(
                session, rid, 409, m.ALREADY_REGISTERED, "duplicate_register"
            )
            return
        if self._issuer is None:
            self._register_failed(session, rid, 500, m.AIS_NOT_CONFIGURED, "ais")
            return
        ais_request = actr_pb2.RegisterRequest()
        ais_request.actr_type.CopyFrom(request.actr_type)
        ais_request.realm.CopyFrom(request.realm)
        try:
            response = await self._issuer.register(ais_request)
        except Exception as e:
            log.warn("AIS register call failed: {error}", error=str(e))
            self._register_failed(session, rid, 500, m.AIS_FAILED + str(e), "ais")
            return
        if response.WhichOneof("result") != "success":
            error = response.error
            self._register_failed(
                session,
                rid,
                500,
                f"{m.AIS_FAILED}AIS error {error.code}: {error.message}",
                "ais",
            )
            return
        ok = response.success
        actr_id = ok.actr_id
        await self._store_acl(request, actr_id)
        if session.closed or session.key is not None:
            log.info(
                "socket gone before registration of {actor} completed",
                actor=actr_id_repr(actr_id),
            )
            return
        now = self._clock.seconds()
        entry = self._new_entry(request, actr_id, now)
        self.registry.add(entry)
        self._persist(entry)
        if entry.service_spec is not None:
            self._pending.save_spec(
                self.specs.put(actr_id.type, entry.service_spec, now)
            )
        self._bind(session, actr_id, ok.credential)
        reply, body = m.to_actor(now, actr_id, rid)
        body.register_response.success.CopyFrom(ok)
        self.send(session, reply)
        self.metrics.registrations += 1
        log.info("registered {actor}", actor=actr_id_repr(actr_id))
        self._notify_presence(actr_id, up=True, reason="registered")

    def _register_failed(
        self, session: Session, reply_for: str, code: int, message: str, reason: str
    ) -> None:
        self.metrics.rejections[reason] += 1
        self.send(
            session, m.register_error(self._clock.seconds(), reply_for, code, message)
        )

    @staticmethod
    def _new_entry(
        request: actr_pb2.RegisterRequest, actr_id: actr_pb2.ActrId, now: float
    ) -> RouteEntry:
        spec: actr_pb2.ServiceSpec | None = None
        if request.HasField("service_spec"):
            spec = actr_pb2.ServiceSpec()
            spec.CopyFrom(request.service_spec)
        own_id = actr_pb2.ActrId()
        own_id.CopyFrom(actr_id)
        name = (
            spec.name
            if spec is not None
            else (f"{actr_id.type.manufacturer}/{actr_id.type.name}")
        )
        return RouteEntry(
            actr_id=own_id,
            type_key=type_key(actr_id.type),
            service_name=name,
            service_spec=spec,
            ws_address=request.ws_address if request.HasField("ws_address") else None,
            last_heartbeat=now,
            online=True,
        )

    async def _store_acl(
        self, request: actr_pb2.RegisterRequest, actr_id: actr_pb2.ActrId
    ) -> None:
        """§5.1 step 2: one ACL row per rule principal that names a type."""
        to_key = type_key(actr_id.type)
        realm_id = actr_id.realm.realm_id
        for rule in request.acl.rules:
            allow = rule.permission == actr_pb2.AclRule.ALLOW
            for principal in rule.principals:
                if principal.HasField("actr_type"):
                    try:
                        await self._realms.add_acl(
                            realm_id, type_key(principal.actr_type), to_key, allow
                        )
                    except Exception:
                        log.failure(
                            "storing an ACL row for {actor}",
                            actor=actr_id_repr(actr_id),
                        )

    # ------------------------------------------------------------------
    # §5.2 actor messages

    async def _actor_message(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        message = envelope.actr_to_server
        source = message.source
        if not self._realm_ok(session, envelope, source):
            return
        claims = await self._authenticate(
            session, envelope, source, message.credential, m.ACTOR_SOURCE_MISMATCH
        )
        if claims is None:
            return
        payload = message.WhichOneof("payload")
        handler = self._actor_handlers.get(payload or "")
        if handler is None:
            log.debug("actr_to_server without payload ignored")
            return
        await handler(self, session, envelope, claims)

    async def _ping(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        ping = envelope.actr_to_server.ping
        key = m.actor_key(source)
        now = self._clock.seconds()
        entry = self.registry.get(key)
        if entry is None:
            entry = await self._restore(key)
            now = self._clock.seconds()
        if entry is None:
            log.debug(
                "ping from unregistered actor {actor}", actor=actr_id_repr(source)
            )
        else:
            entry.availability = ping.availability
            entry.power_reserve = ping.power_reserve
            entry.mailbox_backlog = ping.mailbox_backlog
            entry.sticky_client_ids = tuple(ping.sticky_client_ids)
            entry.last_heartbeat = now
            self._pending.heartbeat(row_key(*key), now, int(now) + REGISTRY_TTL)
            if not entry.online and self._bound.get(key) is session:
                self._set_online(entry, True, "heartbeat")
        reply, body = m.to_actor(now, source, envelope.envelope_id)
        pong = body.pong
        pong.seq = int(now)
        pong.suggest_interval_secs = m.SUGGESTED_INTERVAL
        if claims.key_in_tolerance:
            warning = pong.credential_warning
            warning.type = actr_pb2.CredentialWarning.KEY_IN_TOLERANCE_PERIOD
            warning.message = m.TOLERANCE_WARNING
        self.send(session, reply)

    async def _unregister(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        now = self._clock.seconds()
        reply, body = m.to_actor(now, source, envelope.envelope_id)
        body.unregister_response.success.SetInParent()
        self.send(session, reply)
        key = session.key if session.key is not None else m.actor_key(source)
        self._remove_actor(key, "unregistered")
        log.info("unregistered {actor}", actor=actr_id_repr(source))

    def _remove_actor(self, key: ActorKey, reason: str) -> None:
        session = self._bound.get(key)
        if session is not None:
            self._detach(session)
        entry = self.registry.remove(key)
        self._pending.delete(row_key(*key))
        self.presence.forget(key)
        if entry is not None and entry.online:
            entry.online = False
            self._notify_presence(entry.actr_id, up=False, reason=reason)

    async def _credential_update(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        message = envelope.actr_to_server
        source = message.source
        if not m.same_id(message.credential_update_request.actr_id, source):
            self.metrics.rejections["credential_update_mismatch"] += 1
            log.warn("credential update for another actor ignored")
            return
        rid = envelope.envelope_id
        if self._issuer is None:
            self._reply_error(
                session, envelope, source, 503, m.REFRESH_NOT_CONFIGURED, "ais"
            )
            return
        try:
            response = await self._issuer.refresh(source)
        except Exception as e:
            log.warn("AIS refresh call failed: {error}", error=str(e))
            self._reply_error(
                session, envelope, source, 500, m.REFRESH_FAILED + str(e), "ais"
            )
            return
        if response.WhichOneof("result") != "success":
            error = response.error
            self._reply_error(
                session,
                envelope,
                source,
                500,
                f"{m.REFRESH_FAILED}AIS error {error.code}: {error.message}",
                "ais",
            )
            return
        ok = response.success
        if session.key == m.actor_key(source) and session.credential is not None:
            session.credential.CopyFrom(ok.credential)
        reply, body = m.to_actor(self._clock.seconds(), source, rid)
        result = body.register_response.success
        result.CopyFrom(ok)
        result.actr_id.CopyFrom(source)
        if not result.signaling_heartbeat_interval_secs:
            result.signaling_heartbeat_interval_secs = m.SUGGESTED_INTERVAL
        self.send(session, reply)
        log.info("credential refreshed for {actor}", actor=actr_id_repr(source))

    async def _discovery(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        request = envelope.actr_to_server.discovery_request
        realm_id = source.realm.realm_id
        caller_key = type_key(source.type)
        limit = request.limit
        manufacturer = (
            request.manufacturer if request.HasField("manufacturer") else None
        )
        reply, body = m.to_actor(self._clock.seconds(), source, envelope.envelope_id)
        ok = body.discovery_response.success
        ok.SetInParent()
        seen: set[str] = set()
        for entry in self.registry.in_realm(realm_id):
            if len(seen) >= limit:
                break
            if not entry.online or entry.type_key in seen:
                continue
            if (
                manufacturer is not None
                and entry.actr_id.type.manufacturer != manufacturer
            ):
                continue
            if not self._realms.acl_allowed(realm_id, caller_key, entry.type_key):
                continue
            seen.add(entry.type_key)
            item = ok.entries.add()
            item.actr_type.CopyFrom(entry.actr_id.type)
            item.name = entry.service_name
            spec = entry.service_spec
            if spec is None:
                item.service_fingerprint = "unknown"
                continue
            item.service_fingerprint = spec.fingerprint
            if spec.HasField("description"):
                item.description = spec.description
            if spec.HasField("published_at"):
                item.published_at = spec.published_at
            item.tags.extend(spec.tags)
        self.send(session, reply)

    async def _service_spec(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        name = envelope.actr_to_server.get_service_spec_request.name
        realm_id = source.realm.realm_id
        caller_key = type_key(source.type)
        reply, body = m.to_actor(self._clock.seconds(), source, envelope.envelope_id)
        for entry in self.registry.in_realm(realm_id):
            if (
                entry.service_name == name
                and entry.service_spec is not None
                and self._realms.acl_allowed(realm_id, caller_key, entry.type_key)
            ):
                body.get_service_spec_response.success.CopyFrom(entry.service_spec)
                break
        else:
            error = body.get_service_spec_response.error
            error.code = 404
            error.message = m.SPEC_NOT_FOUND + name
            self.metrics.rejections["spec_not_found"] += 1
        self.send(session, reply)

    async def _route_candidates(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        request = envelope.actr_to_server.route_candidates_request
        target = request.target_type
        entries = self.registry.of_type(
            source.realm.realm_id, target.manufacturer, target.name
        )
        response = await route_candidates(
            request,
            source,
            entries,
            self._realms.acl_allowed,
            self.client_spec,
            self._compat,
            self._clock.seconds(),
        )
        reply, body = m.to_actor(self._clock.seconds(), source, envelope.envelope_id)
        body.route_candidates_response.CopyFrom(response)
        self.send(session, reply)

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        """Spec store lookup for route negotiation; extends the spec's TTL."""
        now = self._clock.seconds()
        spec, renewed = self.specs.lookup(actr_type, fingerprint, now)
        if renewed is not None:
            self._pending.touch_spec(spec_key(actr_type, fingerprint), renewed)
        return spec

    async def _subscribe(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        target = envelope.actr_to_server.subscribe_actr_up_request.target_type
        self.presence.subscribe(target, source)
        reply, body = m.to_actor(self._clock.seconds(), source, envelope.envelope_id)
        body.subscribe_actr_up_response.success.SetInParent()
        self.send(session, reply)

    async def _unsubscribe(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        target = envelope.actr_to_server.unsubscribe_actr_up_request.target_type
        if not self.presence.unsubscribe(target, m.actor_key(source)):
            log.debug("unsubscribe without a subscription")
        reply, body = m.to_actor(self._clock.seconds(), source, envelope.envelope_id)
        body.unsubscribe_actr_up_response.success.SetInParent()
        self.send(session, reply)

    async def _client_error(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        error = envelope.actr_to_server.error
        log.warn(
            "client {actor} reported error {code}: {message}",
            actor=claims.actor_id,
            code=error.code,
            message=error.message[:200],
        )

    _actor_handlers: Final[dict[str, Callable[..., Any]]] = {
        "ping": _ping,
        "unregister_request": _unregister,
        "credential_update_request": _credential_update,
        "discovery_request": _discovery,
        "get_service_spec_request": _service_spec,
        "route_candidates_request": _route_candidates,
        "subscribe_actr_up_request": _subscribe,
        "unsubscribe_actr_up_request": _unsubscribe,
        "error": _client_error,
    }

    # ------------------------------------------------------------------
    # §6 Relay

    async def _relay(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        relay = envelope.actr_relay
        source, target = relay.source, relay.target
        realm_id = source.realm.realm_id
        if not self._realm_ok(session, envelope, source):
            return
        if realm_id != target.realm.realm_id:
            self._reply_error(
                session, envelope, source, 403, m.CROSS_REALM, "cross_realm"
            )
            return
        claims = await self._authenticate(
            session, envelope, source, relay.credential, m.SOURCE_MISMATCH
        )
        if claims is None:
            return
        if session.key is None:
            # An unbound socket has nobody to answer the peer's reply to.
            self._reply_error(
                session, envelope, source, 403, m.CONNECTION_MISMATCH, "connection"
            )
            return
        peer = self._bound.get(m.actor_key(target))
        # ACL on the target's registered type, not the type the sender claims.
        target_type = (
            peer.actor.type if peer is not None and peer.actor else target.type
        )
        if not self._realms.acl_allowed(
            realm_id, type_key(source.type), type_key(target_type)
        ):
            self._reply_error(session, envelope, source, 403, m.ACL_DENIED, "acl")
            return
        if relay.WhichOneof("payload") == "role_negotiation":
            self._negotiate_roles(session, envelope)
            return
        if peer is None:
            self.metrics.relays["no_target"] += 1
            log.debug("relay to unknown target {target}", target=actr_id_repr(target))
            return
        # Forward the same relay in a fresh envelope, without the sender's token.
        m.restamp(envelope, self._clock.seconds())
        relay.credential.CopyFrom(_EMPTY_CREDENTIAL)
        if self.send(peer, envelope):
            self.metrics.relays["forwarded"] += 1
        else:
            self.metrics.relays["send_failed"] += 1

    def _negotiate_roles(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """§6.3: decide who offers and push a RoleAssignment to both parties."""
        relay = envelope.actr_relay
        negotiation = relay.role_negotiation
        first, second = getattr(negotiation, "from"), negotiation.to
        if m.actor_key(first) != m.actor_key(relay.source) or m.actor_key(
            second
        ) != m.actor_key(relay.target):
            self._reply_error(
                session,
                envelope,
                relay.source,
                403,
                "Role negotiation must name the relay's source and target",
                "role_mismatch",
            )
            return
        first_session = self._exact_session(first)
        second_session = self._exact_session(second)
        first_fixed = first_session is not None and first_session.answers
        second_fixed = second_session is not None and second_session.answers
        if first_fixed != second_fixed:
            first_offers = not first_fixed
        else:
            first_offers = _order(first) < _order(second)
        now = self._clock.seconds()
        for party, offers, fixed in (
            (first_session, first_offers, second_fixed),
            (second_session, not first_offers, first_fixed),
        ):
            if party is None:
                continue
            push = m.new_envelope(now)
            out = push.actr_relay
            out.source.CopyFrom(first)
            out.target.CopyFrom(second)
            out.credential.CopyFrom(_EMPTY_CREDENTIAL)
            out.role_assignment.is_offerer = offers
            out.role_assignment.remote_fixed = fixed
            self.send(party, push)
        self.metrics.relays["role_assignment"] += 1

    def _exact_session(self, actr_id: actr_pb2.ActrId) -> Session | None:
        session = self._bound.get(m.actor_key(actr_id))
        if session is None or session.actor is None:
            return None
        return session if m.same_id(session.actor, actr_id) else None

    # ------------------------------------------------------------------
    # Presence

    def _set_online(self, entry: RouteEntry, online: bool, reason: str) -> None:
        if entry.online == online:
            return
        entry.online = online
        self._notify_presence(entry.actr_id, up=online, reason=reason)

    def _notify_presence(self, actr_id: actr_pb2.ActrId, up: bool, reason: str) -> None:
        """Push ActrUp/ActrDown to subscribers of the type allowed to see the actor."""
        subscribers = self.presence.subscribers(actr_id.type)
        if not subscribers:
            return
        realm_id = actr_id.realm.realm_id
        to_key = type_key(actr_id.type)
        now = self._clock.seconds()
        for key, subscriber in subscribers:
            if key[0] != realm_id:
                continue
            if not self._realms.acl_allowed(
                realm_id, type_key(subscriber.type), to_key
            ):
                continue
            session = self._bound.get(key)
            if session is None:
                continue
            push, body = m.to_actor(now, subscriber)
            if up:
                body.actr_up_event.actor_id.CopyFrom(actr_id)
            else:
                event = body.actr_down_event
                event.actor_id.CopyFrom(actr_id)
                event.reason = reason
            self.send(session, push)

    # ------------------------------------------------------------------
    # Persistence and timers

    def _persist(self, entry: RouteEntry) -> None:
        key = m.actor_key(entry.actr_id)
        self._pending.save(
            RegistryRow(
                actor_key=row_key(*key),
                realm_id=key[0],
                actr_id=entry.actr_id.SerializePartialToString(),
                service_name=entry.service_name,
                service_spec=(
                    None
                    if entry.service_spec is None
                    else entry.service_spec.SerializePartialToString()
                ),
                ws_address=entry.ws_address,
                last_heartbeat=entry.last_heartbeat,
                expires_at=int(entry.last_heartbeat) + REGISTRY_TTL,
            )
        )

    def restore_rows(self, rows: list[RegistryRow], specs: Any = ()) -> None:
        """Load persisted entries at startup; they stay offline until reconnected."""
        self.specs.load(specs)
        for row in rows:
            entry = _entry_from_row(row)
            if entry is not None:
                entry.online = False
                self.registry.add(entry)

    async def _restore(self, key: ActorKey) -> RouteEntry | None:
        if self._store is None:
            return None
        try:
            row = await self._store.load_actor(
                row_key(*key), int(self._clock.seconds())
            )
        except Exception:
            log.failure("restoring a registry entry")
            return None
        if row is None:
            return None
        existing = self.registry.get(key)
        if existing is not None:
            return existing
        entry = _entry_from_row(row)
        if entry is None:
            return None
        entry.online = False
        entry.last_heartbeat = self._clock.seconds()
        self.registry.add(entry)
        return entry

    def sweep_heartbeats(self) -> int:
        """Drop entries silent for longer than the heartbeat timeout (§10)."""
        now = self._clock.seconds()
        expired = self.registry.expired(now, self._heartbeat_timeout)
        for entry in expired:
            key = m.actor_key(entry.actr_id)
            self.registry.remove(key)
            if key not in self._bound:
                self.presence.forget(key)
            if entry.online:
                entry.online = False
                self._notify_presence(entry.actr_id, up=False, reason="expired")
        if expired:
            log.info("{count} actors expired", count=len(expired))
        return len(expired)

    async def flush(self) -> None:
        """Write the pending registry and spec changes (one transaction)."""
        while self._flushing is not None:
            await self._flushing
        if not self._pending or self._store is None:
            return
        batch, self._pending = self._pending, WriteBehind()
        self._flushing = Deferred()
        try:
            await self._store.flush(batch)
        except Exception:
            log.failure("writing the registry cache")
        finally:
            d, self._flushing = self._flushing, None
            d.callback(None)

    async def sweep_store(self) -> None:
        """Delete expired SQLite rows and in-memory specs."""
        now = self._clock.seconds()
        self.specs.sweep(now)
        if self._store is not None:
            rows, specs = await self._store.sweep(int(now))
            if rows or specs:
                log.info(
                    "expired {rows} registry rows and {specs} specs",
                    rows=rows,
                    specs=specs,
                )

    def timers(self) -> list[TimerService]:
        """Write-behind flush (1 s), heartbeat expiry (30 s), TTL sweep (300 s)."""
        return [
            TimerService(
                FLUSH_INTERVAL, self._tick, self.flush, "flushing the registry"
            ),
            TimerService(
                HEARTBEAT_SWEEP_INTERVAL,
                self._tick,
                self._sweep_heartbeats_async,
                "expiring heartbeats",
            ),
            TimerService(
                STORE_SWEEP_INTERVAL, self._tick, self.sweep_store, "sweeping the cache"
            ),
        ]

    @staticmethod
    def _tick(
        work: Callable[[], Coroutine[Any, Any, None]], what: str
    ) -> Deferred[None]:
        d = Deferred.fromCoroutine(work())
        d.addErrback(lambda f: log.failure("while {what}", f, what=what))
        return d

    async def _sweep_heartbeats_async(self) -> None:
        self.sweep_heartbeats()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._sessions:
            self._all_closed = Deferred()
            waiting = self._all_closed
            for session in list(self._sessions):
                session.connection.close_session(1001, "server shutting down")
            waiting.addTimeout(CLOSE_TIMEOUT, self._clock)
            try:
                await waiting
            except Exception:
                log.warn(
                    "{count} sessions did not close in time; aborting them",
                    count=len(self._sessions),
                )
                for session in list(self._sessions):
                    session.connection.abort()
        await self.flush()


def _order(actr_id: actr_pb2.ActrId) -> tuple[int, int, str, str]:
    return (
        actr_id.realm.realm_id,
        actr_id.serial_number,
        actr_id.type.manufacturer,
        actr_id.type.name,
    )


def _entry_from_row(row: RegistryRow) -> RouteEntry | None:
    try:
        actr_id = actr_pb2.ActrId()
        actr_id.ParseFromString(row.actr_id)
        spec: actr_pb2.ServiceSpec | None = None
        if row.service_spec is not None:
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(row.service_spec)
    except Exception:
        log.warn("unreadable registry row {key} skipped", key=row.actor_key)
        return None
    return RouteEntry(
        actr_id=actr_id,
        type_key=type_key(actr_id.type),
        service_name=row.service_name,
        service_spec=spec,
        ws_address=row.ws_address,
        last_heartbeat=row.last_heartbeat,
    )


__all__ = ["Connection", "Session", "SignalingService"]
