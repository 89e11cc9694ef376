"""Relays between actors and role negotiation (signaling.md §6).

Check order (§6.1, with §11's fixes): source realm, same realm for both ends,
credential (claims name ``source``, ``source`` is this socket's actor), then
the ACL on the target's registered type. ICE candidates, SDPs and ICE restarts
are forwarded in the same envelope, restamped, with an empty credential instead
of the sender's token (§6.2). A role negotiation is answered with a
RoleAssignment to both parties (§6.3); its ``from``/``to`` must be the relay's
source/target. Roles are read from the connections bound to the exact ActrIds;
the assignments are delivered by realm_id + serial_number (a missing party is
skipped).

This is the hot path: when the sender's token is in the validator's cache a
relay is handled synchronously (:meth:`Relays.relay_now`), without a Deferred.
The common case there (the socket's own actor relays, within its realm, with
a credential the session already presented, to a connected target the ACL
allows) takes one straight run of checks; every other case, and every refusal,
goes through the general checks, which give the exact answers.
"""

from __future__ import annotations

from typing import Final

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.actrid import actr_id_repr, type_key
from actrix.core.bus import DELIVER, NEGOTIATE, BusMessage
from actrix.core.directory import ActorKey, DirectoryUnavailable
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.checks import MessageChecks
from actrix.signaling.context import FlowContext
from actrix.signaling.sessions import Session

log = Logger()

ROLE_MISMATCH: Final = "Role negotiation must name the relay's source and target"


class Relays:
    """Checks and forwards ``actr_relay`` envelopes."""

    def __init__(self, context: FlowContext, checks: MessageChecks) -> None:
        self._ctx = context
        self._checks = checks
        self._ids = m.EnvelopeIds()
        # Fixed for the process: with a local bus no actor is anywhere else.
        self._shared = context.bus.shared

    def relay_now(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """Handle a relay now if its token is cached; False: use :meth:`relay`."""
        relay = envelope.actr_relay
        source = relay.source
        target = relay.target
        realm_id = source.realm.realm_id
        ctx = self._ctx
        if (
            session.actor != source
            or target.realm.realm_id != realm_id
            or ctx.realms.realm_problem(realm_id) is not None
        ):
            return self._relay_checked(session, envelope)
        now = ctx.clock.seconds()
        claims = self._checks.session_claims(session, relay.credential, realm_id, now)
        if claims is None or claims.actor_id != session.label:
            return self._relay_checked(session, envelope)
        key = (realm_id, target.serial_number)
        peer = ctx.sessions.bound(key)
        payload = relay.WhichOneof("payload")
        if (
            peer is None
            and self._shared
            and payload != "role_negotiation"
            and self._forward_elsewhere(session, envelope, key, payload, now)
        ):
            return True
        if (
            peer is None
            or payload == "role_negotiation"
            or not ctx.realms.acl_allowed(realm_id, session.type_key, peer.type_key)
        ):
            return self._relay_checked(session, envelope)
        self._forward(peer, envelope, relay, payload, now)
        return True

    def _forward_elsewhere(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        key: ActorKey,
        payload: str | None,
        now: float,
    ) -> bool:
        """:meth:`relay_now` to an actor of another node whose place is in memory.

        False (the envelope untouched) when the directory must be asked, or
        the ACL refuses: :meth:`_deliver_remote` answers that case.
        """
        ctx = self._ctx
        location = ctx.directory.location_now(key)
        if (
            location is None
            or not location.online
            or location.node == ctx.bus.node_id
            or not ctx.realms.acl_allowed(key[0], session.type_key, location.type_key)
        ):
            return False
        message = self._delivery(envelope, key, location.session, payload, now)
        self._send(location.node, message)
        return True

    def _delivery(
        self,
        envelope: signaling_pb2.SignalingEnvelope,
        key: ActorKey,
        session: int,
        payload: str | None,
        now: float,
    ) -> BusMessage:
        """The relay as another node writes it: restamped, without the token."""
        m.restamp(envelope, now, new_id=self._ids())
        credential = envelope.actr_relay.credential
        credential.encrypted_token = b""
        credential.token_key_id = 0
        return BusMessage(
            DELIVER,
            key,
            session,
            m.encode(envelope),
            self._ctx.bus.node_id,
            flow=payload or m.flow_name(envelope),
        )

    def _send(self, node: str, message: BusMessage) -> None:
        """Hand ``message`` to the bus without waiting for it.

        Nothing of the outcome reaches the sender (an unheard relay is one to
        an offline target), so the session's next message never waits for a
        Redis round trip; the bus keeps the order of what it is handed.
        """
        if self._ctx.bus.send_now(node, message):
            self._ctx.metrics.relays["remote"] += 1
            return
        d = Deferred.fromCoroutine(self._publish(node, message))
        d.addErrback(self._publish_failed)

    async def _publish(self, node: str, message: BusMessage) -> None:
        if await self._ctx.bus.send(node, message):
            self._ctx.metrics.relays["remote"] += 1
        else:
            self._ctx.metrics.relays["send_failed"] += 1

    def _publish_failed(self, failure: Failure) -> None:
        if failure.check(DirectoryUnavailable):
            self._ctx.metrics.rejections["directory_unavailable"] += 1
        else:
            log.failure("while relaying to another node", failure)

    def _relay_checked(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """:meth:`relay_now` through the general checks (answers every refusal)."""
        relay = envelope.actr_relay
        source = relay.source
        if not self._realms_ok(session, envelope, source, relay.target):
            return True
        claims = self._checks.cached_claims(relay.credential, source.realm.realm_id)
        if claims is None:
            return False
        if not self._checks.identity_ok(
            session, envelope, source, claims, m.SOURCE_MISMATCH
        ):
            return True
        if self._elsewhere(session, envelope):
            return False  # the directory (network) says where the target is
        self._deliver(session, envelope)
        return True

    async def relay(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """Handle a relay whose credential must be validated first."""
        relay = envelope.actr_relay
        source = relay.source
        if not self._realms_ok(session, envelope, source, relay.target):
            return
        claims = await self._checks.authenticate(
            session, envelope, source, relay.credential, m.SOURCE_MISMATCH
        )
        if claims is None:
            return
        if self._elsewhere(session, envelope):
            await self._deliver_remote(session, envelope)
        else:
            self._deliver(session, envelope)

    def _elsewhere(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """The target may be on another node: no local socket, directory shared."""
        return (
            self._shared
            and session.key is not None
            and self._ctx.sessions.bound(m.actor_key(envelope.actr_relay.target))
            is None
        )

    async def _deliver_remote(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """Like :meth:`_deliver` for a target held by another node (§6 checks kept).

        The sender gets the same answers as in one process: nothing for an
        unknown or offline target, 403 for the ACL or a role mismatch.
        """
        relay = envelope.actr_relay
        source, target = relay.source, relay.target
        key = m.actor_key(target)
        entry = await self._ctx.directory.locate(key)
        bus = self._ctx.bus
        if (
            entry is None
            or not entry.online
            or entry.node == bus.node_id
            or self._ctx.sessions.bound(key) is not None
        ):
            self._deliver(session, envelope)  # unknown, offline, or back here
            return
        from_key = (
            session.type_key if session.actor == source else type_key(source.type)
        )
        if not self._ctx.realms.acl_allowed(
            source.realm.realm_id, from_key, entry.type_key
        ):
            self._ctx.sessions.reply_error(
                session, envelope, source, 403, m.ACL_DENIED, "acl"
            )
            return
        payload = relay.WhichOneof("payload")
        if payload == "role_negotiation":
            if not self._roles_named(session, envelope):
                return
            first = getattr(relay.role_negotiation, "from")
            first_exact = self._ctx.sessions.exact(first)
            message = BusMessage(
                NEGOTIATE,
                key,
                entry.session,
                envelope.SerializeToString(),
                origin=bus.node_id,
                flag=first_exact is not None and first_exact.answers,
            )
        else:
            message = self._delivery(
                envelope, key, entry.session, payload, self._ctx.clock.seconds()
            )
        self._send(entry.node, message)

    def negotiated_here(self, message: BusMessage) -> None:
        """Another node's actor negotiates roles with our actor ``message.key``.

        Decide as :meth:`_negotiate_roles` would, push the assignment to our
        party and send the other one back to the node it came from.
        """
        envelope = signaling_pb2.SignalingEnvelope()
        envelope.ParseFromString(message.payload)
        relay = envelope.actr_relay
        negotiation = relay.role_negotiation
        first, second = getattr(negotiation, "from"), negotiation.to
        second_exact = self._ctx.sessions.exact(second)
        second_fixed = second_exact is not None and second_exact.answers
        first_offers = _first_offers(first, second, message.flag, second_fixed)
        now = self._ctx.clock.seconds()
        party = self._ctx.sessions.bound(m.actor_key(second))
        if party is not None:
            push = _assignment(now, first, second, not first_offers, message.flag)
            self._ctx.sessions.send(party, push, "role_assignment")
        back = _assignment(now, first, second, first_offers, second_fixed)
        answer = BusMessage(
            DELIVER,
            m.actor_key(first),
            0,
            back.SerializeToString(),
            origin=self._ctx.bus.node_id,
        )
        self._ctx.metrics.relays["role_assignment"] += 1
        d = Deferred.fromCoroutine(self._ctx.bus.send(message.origin, answer))
        d.addErrback(lambda f: log.failure("sending a role assignment back", f))

    def _realms_ok(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
        target: actr_pb2.ActrId,
    ) -> bool:
        if not self._checks.realm_ok(session, envelope, source):
            return False
        if source.realm.realm_id != target.realm.realm_id:
            self._ctx.sessions.reply_error(
                session, envelope, source, 403, m.CROSS_REALM, "cross_realm"
            )
            return False
        return True

    def _deliver(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """After the credential: bound socket, ACL, then forward or negotiate."""
        relay = envelope.actr_relay
        source, target = relay.source, relay.target
        if session.key is None:
            # An unbound socket has nobody to answer the peer's reply to.
            self._ctx.sessions.reply_error(
                session, envelope, source, 403, m.CONNECTION_MISMATCH, "connection"
            )
            return
        peer = self._ctx.sessions.bound(m.actor_key(target))
        # ACL on the target's registered type, not the type the sender claims.
        to_key = peer.type_key if peer is not None else type_key(target.type)
        if session.actor == source:
            from_key = session.type_key
        else:
            from_key = type_key(source.type)
        if not self._ctx.realms.acl_allowed(source.realm.realm_id, from_key, to_key):
            self._ctx.sessions.reply_error(
                session, envelope, source, 403, m.ACL_DENIED, "acl"
            )
            return
        payload = relay.WhichOneof("payload")
        if payload == "role_negotiation":
            self._negotiate_roles(session, envelope)
            return
        if peer is None:
            self._ctx.metrics.relays["no_target"] += 1
            log.debug("relay to unknown target {target}", target=actr_id_repr(target))
            return
        self._forward(peer, envelope, relay, payload, self._ctx.clock.seconds())

    def _forward(
        self,
        peer: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        relay: signaling_pb2.ActrRelay,
        payload: str | None,
        now: float,
    ) -> None:
        """Forward the same relay in a fresh envelope, without the sender's token."""
        m.restamp(envelope, now, new_id=self._ids())
        credential = relay.credential
        credential.encrypted_token = b""
        credential.token_key_id = 0
        if self._ctx.sessions.send(peer, envelope, payload):
            self._ctx.metrics.relays["forwarded"] += 1
        else:
            self._ctx.metrics.relays["send_failed"] += 1

    def _negotiate_roles(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> None:
        """§6.3: decide who offers and push a RoleAssignment to both parties."""
        relay = envelope.actr_relay
        negotiation = relay.role_negotiation
        first, second = getattr(negotiation, "from"), negotiation.to
        if not self._roles_named(session, envelope):
            return
        # Roles come from the connection bound to the full ActrId; delivery
        # goes to the actor's socket matched on realm_id + serial_number.
        sessions = self._ctx.sessions
        first_exact = sessions.exact(first)
        second_exact = sessions.exact(second)
        first_fixed = first_exact is not None and first_exact.answers
        second_fixed = second_exact is not None and second_exact.answers
        first_offers = _first_offers(first, second, first_fixed, second_fixed)
        now = self._ctx.clock.seconds()
        for party, offers, fixed in (
            (sessions.bound(m.actor_key(first)), first_offers, second_fixed),
            (sessions.bound(m.actor_key(second)), not first_offers, first_fixed),
        ):
            if party is None:
                continue
            push = _assignment(now, first, second, offers, fixed)
            sessions.send(party, push, "role_assignment")
        self._ctx.metrics.relays["role_assignment"] += 1

    def _roles_named(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """A role negotiation's from/to must be the relay's source/target."""
        relay = envelope.actr_relay
        negotiation = relay.role_negotiation
        first, second = getattr(negotiation, "from"), negotiation.to
        if m.actor_key(first) != m.actor_key(relay.source) or m.actor_key(
            second
        ) != m.actor_key(relay.target):
            self._ctx.sessions.reply_error(
                session, envelope, relay.source, 403, ROLE_MISMATCH, "role_mismatch"
            )
            return False
        return True


def _first_offers(
    first: actr_pb2.ActrId,
    second: actr_pb2.ActrId,
    first_fixed: bool,
    second_fixed: bool,
) -> bool:
    """§6.3: the side that only answers never offers; else the lower id offers."""
    if first_fixed != second_fixed:
        return not first_fixed
    return _order(first) < _order(second)


def _assignment(
    now: float,
    first: actr_pb2.ActrId,
    second: actr_pb2.ActrId,
    offers: bool,
    remote_fixed: bool,
) -> signaling_pb2.SignalingEnvelope:
    push = m.new_envelope(now)
    out = push.actr_relay
    out.source.CopyFrom(first)
    out.target.CopyFrom(second)
    out.credential.encrypted_token = b""
    out.credential.token_key_id = 0
    out.role_assignment.is_offerer = offers
    out.role_assignment.remote_fixed = remote_fixed
    return push


def _order(actr_id: actr_pb2.ActrId) -> tuple[int, int, str, str]:
    return (
        actr_id.realm.realm_id,
        actr_id.serial_number,
        actr_id.type.manufacturer,
        actr_id.type.name,
    )
