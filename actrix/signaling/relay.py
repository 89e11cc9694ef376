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
"""

from __future__ import annotations

from typing import Final

from twisted.logger import Logger

from actrix.core.actrid import actr_id_repr, type_key
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

    def relay_now(
        self, session: Session, envelope: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """Handle a relay now if its token is cached; False: use :meth:`relay`."""
        relay = envelope.actr_relay
        source = relay.source
        if not self._realms_ok(session, envelope, source, relay.target):
            return True
        claims = self._checks.cached_claims(relay.credential, source.realm.realm_id)
        if claims is None:
            return False
        if self._checks.identity_ok(
            session, envelope, source, claims, m.SOURCE_MISMATCH
        ):
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
        if claims is not None:
            self._deliver(session, envelope)

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
        # Forward the same relay in a fresh envelope, without the sender's token.
        m.restamp(envelope, self._ctx.clock.seconds(), new_id=self._ids())
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
        if m.actor_key(first) != m.actor_key(relay.source) or m.actor_key(
            second
        ) != m.actor_key(relay.target):
            self._ctx.sessions.reply_error(
                session, envelope, relay.source, 403, ROLE_MISMATCH, "role_mismatch"
            )
            return
        # Roles come from the connection bound to the full ActrId; delivery
        # goes to the actor's socket matched on realm_id + serial_number.
        sessions = self._ctx.sessions
        first_exact = sessions.exact(first)
        second_exact = sessions.exact(second)
        first_fixed = first_exact is not None and first_exact.answers
        second_fixed = second_exact is not None and second_exact.answers
        if first_fixed != second_fixed:
            first_offers = not first_fixed
        else:
            first_offers = _order(first) < _order(second)
        now = self._ctx.clock.seconds()
        for party, offers, fixed in (
            (sessions.bound(m.actor_key(first)), first_offers, second_fixed),
            (sessions.bound(m.actor_key(second)), not first_offers, first_fixed),
        ):
            if party is None:
                continue
            push = m.new_envelope(now)
            out = push.actr_relay
            out.source.CopyFrom(first)
            out.target.CopyFrom(second)
            out.credential.encrypted_token = b""
            out.credential.token_key_id = 0
            out.role_assignment.is_offerer = offers
            out.role_assignment.remote_fixed = fixed
            sessions.send(party, push, "role_assignment")
        self._ctx.metrics.relays["role_assignment"] += 1


def _order(actr_id: actr_pb2.ActrId) -> tuple[int, int, str, str]:
    return (
        actr_id.realm.realm_id,
        actr_id.serial_number,
        actr_id.type.manufacturer,
        actr_id.type.name,
    )
