"""An actor's life in the registry: Register, reconnect, heartbeat, credential, exit.

signaling.md §5.1 (Register through AIS), §1.1 (URL identity on reconnect,
validated here), §5.3 (Ping), §5.4 (Unregister), §5.5 (CredentialUpdate, which
keeps the actor's serial) and §10 (heartbeat expiry). Every change to an entry
is recorded for the write-behind and announced to presence subscribers.

ACL of a Register (deviating from §5.1 step 2): a request naming more principals
than ``max_acl_principals`` is refused with 400 before AIS is called; otherwise,
when it carries an ``acl``, its rules become what its type declares, replacing
the previous registration's (one row per triple, an explicit DENY beating ALLOW
within the request, whatever the order).
"""

from __future__ import annotations

from typing import Final

from twisted.logger import Logger

from actrix.core.actrid import actr_id_repr, type_key
from actrix.core.bus import KICK, BusMessage
from actrix.core.directory import (
    ActorEntry,
    ActorKey,
    DirectoryUnavailable,
    Heartbeat,
)
from actrix.core.interfaces import (
    AclRegistry,
    Claims,
    CredentialError,
    CredentialValidator,
    IdentityIssuer,
)
from actrix.core.logthrottle import LogThrottle
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.context import FlowContext
from actrix.signaling.sessions import REPLACED_CODE, Session

log = Logger()

MAX_ACL_PRINCIPALS: Final = 256


class Registration:
    """Register, URL identity, Ping, Unregister, CredentialUpdate and expiry."""

    def __init__(
        self,
        context: FlowContext,
        validator: CredentialValidator,
        issuer: IdentityIssuer | None,
        acl: AclRegistry,
        max_acl_principals: int = MAX_ACL_PRINCIPALS,
    ) -> None:
        self._ctx = context
        self._validator = validator
        self.issuer = issuer
        self._acl = acl
        self._max_acl_principals = max_acl_principals
        # Lines any client can cause: one per IP and reason a minute.
        self._log_throttle = LogThrottle(context.clock)

    # ------------------------------------------------------------------
    # §5.1 Register

    async def register(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        request = envelope.peer_to_server.register_request
        rid = envelope.envelope_id
        problem = self._ctx.realms.realm_problem(request.realm.realm_id)
        if problem is not None:
            self._failed(session, rid, 403, m.REALM_FAILED + problem, "realm")
            return
        if session.key is not None:
            self._failed(session, rid, 409, m.ALREADY_REGISTERED, "duplicate_register")
            return
        principals = sum(len(rule.principals) for rule in request.acl.rules)
        if principals > self._max_acl_principals:
            text = f"{m.TOO_MANY_PRINCIPALS}{principals} > {self._max_acl_principals}"
            self._failed(session, rid, 400, text, "acl_principals")
            return
        if self.issuer is None:
            self._failed(session, rid, 500, m.AIS_NOT_CONFIGURED, "ais")
            return
        if not self._ctx.directory.available:
            text = m.DIRECTORY_UNAVAILABLE
            self._failed(session, rid, 503, text, "directory_unavailable")
            return
        ais_request = actr_pb2.RegisterRequest()
        ais_request.actr_type.CopyFrom(request.actr_type)
        ais_request.realm.CopyFrom(request.realm)
        try:
            response = await self.issuer.register(ais_request)
        except Exception as e:
            log.warn("AIS register call failed: {error}", error=str(e))
            self._failed(session, rid, 500, m.AIS_FAILED + str(e), "ais")
            return
        if response.WhichOneof("result") != "success":
            error = response.error
            text = f"{m.AIS_FAILED}AIS error {error.code}: {error.message}"
            self._failed(session, rid, 500, text, "ais")
            return
        ok = response.success
        actr_id = ok.actr_id
        await self._store_acl(request, actr_id)
        if _taken(session):
            # A client that leaves early is normal (and needs no credential).
            log.debug(
                "socket gone before registration of {actor} completed",
                actor=actr_id_repr(actr_id),
            )
            return
        # Name this node in the directory only once it can hear other nodes.
        await self._ctx.bus.ready()
        now = self._ctx.clock.seconds()
        try:
            await self._ctx.directory.register(
                _new_entry(request, actr_id, now, session.id)
            )
        except DirectoryUnavailable:
            text = m.DIRECTORY_UNAVAILABLE
            self._failed(session, rid, 503, text, "directory_unavailable")
            return
        if _taken(session):
            # The socket went while a shared directory was being written.
            await self._ctx.directory.remove(m.actor_key(actr_id))
            return
        self._ctx.sessions.bind(session, actr_id, ok.credential)
        reply, body = m.to_actor(now, actr_id, rid)
        body.register_response.success.CopyFrom(ok)
        self._ctx.sessions.send(session, reply)
        self._ctx.metrics.registrations += 1
        # Debug, not info: anyone may register (no credential), so a line per
        # registration would let clients set the log volume; the count is in
        # the metrics (actrix_signaling_registrations).
        log.debug("registered {actor}", actor=actr_id_repr(actr_id))
        await self._ctx.presence.notify(actr_id, up=True, reason="registered")

    def _failed(
        self, session: Session, reply_for: str, code: int, message: str, reason: str
    ) -> None:
        self._ctx.metrics.rejections[reason] += 1
        now = self._ctx.clock.seconds()
        self._ctx.sessions.send(
            session, m.register_error(now, reply_for, code, message)
        )

    async def _store_acl(
        self, request: actr_pb2.RegisterRequest, actr_id: actr_pb2.ActrId
    ) -> None:
        """The request's ACL becomes what the new actor's type declares.

        A request without an ``acl`` leaves the type's rules as they are.
        """
        if not request.HasField("acl"):
            return
        try:
            await self._acl.replace_acl(
                actr_id.realm.realm_id, type_key(actr_id.type), declared_acl(request)
            )
        except Exception:
            log.failure("storing the ACL of {actor}", actor=actr_id_repr(actr_id))

    # ------------------------------------------------------------------
    # §1.1 URL identity

    def _identity_ignored(self, session: Session, label: str, reason: str) -> None:
        """One line per client IP a minute: anyone may offer a URL identity."""
        suppressed = self._log_throttle.admit(session.ip, "url_identity")
        if suppressed is not None:
            log.info(
                "URL identity {actor} from {ip} ignored: {reason}"
                " ({suppressed} more not logged)",
                actor=label,
                ip=session.ip,
                reason=reason,
                suppressed=suppressed,
            )

    async def bind_url_identity(
        self,
        session: Session,
        actr_id: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
    ) -> bool:
        """Reconnect identity, honoured only when the token names ``actr_id``.

        On success any other socket of the actor is detached and closed, the
        session is bound, and the actor's registry entry (from memory or
        SQLite) comes back online. On failure nothing changes.
        """
        realm_id = actr_id.realm.realm_id
        label = actr_id_repr(actr_id)
        if self._ctx.realms.realm_problem(realm_id) is not None:
            self._identity_ignored(session, label, "realm unusable")
            return False
        try:
            claims = await self._validator.validate(
                credential.encrypted_token, credential.token_key_id, realm_id
            )
        except CredentialError as e:
            self._ctx.metrics.rejections["url_identity"] += 1
            self._identity_ignored(session, label, e.reason)
            return False
        if claims.actor_id != label:
            self._ctx.metrics.rejections["url_identity"] += 1
            self._identity_ignored(session, label, "token names another actor")
            return False
        if session.closed or session.key is not None:
            return False
        key = m.actor_key(actr_id)
        previous = self._ctx.sessions.bound(key)
        if previous is not None and previous is not session:
            self._ctx.sessions.detach(previous)
            previous.connection.close_session(
                REPLACED_CODE, "replaced by a new connection"
            )
        self._ctx.sessions.bind(session, actr_id, credential)
        await self._ctx.bus.ready()
        entry = await self._ctx.directory.lookup(key)
        bus = self._ctx.bus
        if entry is not None and entry.node not in ("", bus.node_id):
            # The actor's old socket is on another node: that node closes it.
            kick = BusMessage(KICK, key, entry.session, origin=bus.node_id)
            await bus.send(entry.node, kick)
        if (
            entry is not None
            and not session.closed
            and self._ctx.sessions.bound(key) is session
        ):
            await self._ctx.presence.set_online(
                key,
                True,
                "reconnected",
                now=self._ctx.clock.seconds(),
                session=session.id,
            )
        log.info("actor {actor} reconnected", actor=label)
        return True

    # ------------------------------------------------------------------
    # §5.3 - §5.5 actor messages

    async def ping(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        ping = envelope.actr_to_server.ping
        key = m.actor_key(source)
        now = self._ctx.clock.seconds()
        directory = self._ctx.directory
        if directory.cached(key) is None:
            await directory.lookup(key)
            now = self._ctx.clock.seconds()
        beat = Heartbeat(
            availability=ping.availability,
            power_reserve=ping.power_reserve,
            mailbox_backlog=ping.mailbox_backlog,
            sticky_client_ids=tuple(ping.sticky_client_ids),
        )
        entry = await directory.heartbeat(key, beat, now)
        if entry is None:
            log.debug(
                "ping from unregistered actor {actor}", actor=actr_id_repr(source)
            )
        elif not entry.online and self._ctx.sessions.bound(key) is session:
            await self._ctx.presence.set_online(key, True, "heartbeat")
        reply, body = m.to_actor(now, source, envelope.envelope_id)
        pong = body.pong
        pong.seq = int(now)
        pong.suggest_interval_secs = m.SUGGESTED_INTERVAL
        if claims.key_in_tolerance:
            warning = pong.credential_warning
            warning.type = actr_pb2.CredentialWarning.KEY_IN_TOLERANCE_PERIOD
            warning.message = m.TOLERANCE_WARNING
        self._ctx.sessions.send(session, reply, "pong")

    async def unregister(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        source = envelope.actr_to_server.source
        now = self._ctx.clock.seconds()
        reply, body = m.to_actor(now, source, envelope.envelope_id)
        body.unregister_response.success.SetInParent()
        self._ctx.sessions.send(session, reply)
        key = session.key if session.key is not None else m.actor_key(source)
        await self.remove_actor(key, "unregistered")
        log.info("unregistered {actor}", actor=actr_id_repr(source))

    async def remove_actor(self, key: ActorKey, reason: str) -> None:
        """Drop an actor from sessions, the directory and presence."""
        session = self._ctx.sessions.bound(key)
        if session is not None:
            self._ctx.sessions.detach(session)
        entry = await self._ctx.directory.remove(key)
        await self._ctx.directory.forget_subscriptions(key)
        if entry is not None and entry.online:
            await self._ctx.presence.notify(entry.actr_id, up=False, reason=reason)

    async def credential_update(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        claims: Claims,
    ) -> None:
        message = envelope.actr_to_server
        source = message.source
        if not m.same_id(message.credential_update_request.actr_id, source):
            self._ctx.metrics.rejections["credential_update_mismatch"] += 1
            log.warn("credential update for another actor ignored")
            return
        if self.issuer is None:
            self._ctx.sessions.reply_error(
                session, envelope, source, 503, m.REFRESH_NOT_CONFIGURED, "ais"
            )
            return
        try:
            response = await self.issuer.refresh(source)
        except Exception as e:
            log.warn("AIS refresh call failed: {error}", error=str(e))
            self._ctx.sessions.reply_error(
                session, envelope, source, 500, m.REFRESH_FAILED + str(e), "ais"
            )
            return
        if response.WhichOneof("result") != "success":
            error = response.error
            text = f"{m.REFRESH_FAILED}AIS error {error.code}: {error.message}"
            self._ctx.sessions.reply_error(session, envelope, source, 500, text, "ais")
            return
        ok = response.success
        if session.key == m.actor_key(source) and session.credential is not None:
            session.credential.CopyFrom(ok.credential)
        now = self._ctx.clock.seconds()
        reply, body = m.to_actor(now, source, envelope.envelope_id)
        result = body.register_response.success
        result.CopyFrom(ok)
        result.actr_id.CopyFrom(source)
        if not result.signaling_heartbeat_interval_secs:
            result.signaling_heartbeat_interval_secs = m.SUGGESTED_INTERVAL
        self._ctx.sessions.send(session, reply)
        log.info("credential refreshed for {actor}", actor=actr_id_repr(source))

    # ------------------------------------------------------------------
    # §10 expiry

    async def expire(self) -> int:
        """Drop entries silent for longer than the heartbeat timeout."""
        now = self._ctx.clock.seconds()
        expired = await self._ctx.directory.expire(now, self._ctx.heartbeat_timeout)
        for entry in expired:
            if entry.online:
                await self._ctx.presence.notify(
                    entry.actr_id, up=False, reason="expired"
                )
        if expired:
            log.info("{count} actors expired", count=len(expired))
        await self._forget_orphan_subscriptions()
        return len(expired)

    async def _forget_orphan_subscriptions(self) -> None:
        """Drop subscriptions of actors with neither an entry nor a socket.

        Such an actor expired (or its socket closed after its entry expired),
        or it subscribed from an unbound socket; nothing else would ever
        remove its subscriptions.
        """
        directory = self._ctx.directory
        for key in await directory.subscribed_actors():
            if directory.cached(key) is None and not self._ctx.sessions.is_bound(key):
                await directory.forget_subscriptions(key)


def _taken(session: Session) -> bool:
    """The socket closed or got bound while a registration was waiting."""
    return session.closed or session.key is not None


def _new_entry(
    request: actr_pb2.RegisterRequest,
    actr_id: actr_pb2.ActrId,
    now: float,
    session_id: int,
) -> ActorEntry:
    spec: actr_pb2.ServiceSpec | None = None
    if request.HasField("service_spec"):
        spec = actr_pb2.ServiceSpec()
        spec.CopyFrom(request.service_spec)
    own_id = actr_pb2.ActrId()
    own_id.CopyFrom(actr_id)
    name = (
        spec.name
        if spec is not None
        else f"{actr_id.type.manufacturer}/{actr_id.type.name}"
    )
    return ActorEntry(
        actr_id=own_id,
        type_key=type_key(actr_id.type),
        service_name=name,
        service_spec=spec,
        ws_address=request.ws_address if request.HasField("ws_address") else None,
        last_heartbeat=now,
        online=True,
        session=session_id,
    )


def declared_acl(request: actr_pb2.RegisterRequest) -> dict[str, bool]:
    """From type key -> allow, for every principal that names a type.

    A type under both a DENY and an ALLOW rule is denied, in any order.
    ``principal.realm`` is ignored and principals without ``actr_type`` are
    skipped, as in signaling.md §5.1.
    """
    rules: dict[str, bool] = {}
    for rule in request.acl.rules:
        allow = rule.permission == actr_pb2.AclRule.ALLOW
        for principal in rule.principals:
            if principal.HasField("actr_type"):
                key = type_key(principal.actr_type)
                rules[key] = rules.get(key, True) and allow
    return rules
