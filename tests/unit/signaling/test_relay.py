"""Relays through SignalingService: the synchronous fast path and its fallback."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.core.bus import DELIVER, BusMessage
from actrix.proto import actr_pb2, signaling_pb2, webrtc_pb2
from actrix.signaling import messages
from tests.unit.signaling.fakes import (
    CachingValidator,
    FakeConnection,
    Harness,
    envelope_with_id,
    token_for,
)


class RelayFastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.validator = CachingValidator()
        self.h = Harness(validator=self.validator)
        self.receiver_session, self.receiver = self.h.open()
        self.target = self.h.register(self.receiver_session, "svc", "caller")
        self.sender_session, self.sender = self.h.open()
        self.source = self.h.register(self.sender_session, "caller")

    def relay(
        self,
        candidate: str,
        source: actr_pb2.ActrId | None = None,
        credential: actr_pb2.AIdCredential | None = None,
    ) -> str:
        """Send one ICE relay from the sender's socket; returns its envelope id."""
        envelope = envelope_with_id()
        relay = envelope.actr_relay
        relay.source.CopyFrom(source if source is not None else self.source)
        relay.credential.CopyFrom(
            credential if credential is not None else token_for(self.source)
        )
        relay.target.CopyFrom(self.target)
        relay.ice_candidate.CopyFrom(webrtc_pb2.IceCandidate(candidate=candidate))
        sent_id = envelope.envelope_id
        self.h.service.handle(self.sender_session, envelope)
        return sent_id

    def candidates(self, connection: FakeConnection) -> list[str]:
        return [
            e.actr_relay.ice_candidate.candidate
            for e in connection.sent
            if e.HasField("actr_relay")
        ]

    def test_first_relay_validates_then_cache_serves(self) -> None:
        """Only the first relay of a token is validated; later ones use the cache."""
        for n in range(3):
            self.relay(f"c{n}")
        self.assertEqual(self.validator.validations, 1)
        self.assertEqual(self.candidates(self.receiver), ["c0", "c1", "c2"])
        self.assertEqual(self.h.service.metrics.relays["forwarded"], 3)

    def test_session_keeps_its_credential_until_the_answer_expires(self) -> None:
        """Later relays with the same token skip the validator's cache until the
        time ``cached_until`` gave; then it is asked again (and may refuse)."""
        self.validator.until = self.h.clock.seconds() + 10
        for n in range(3):
            self.relay(f"c{n}")
        # Relay 1 misses (fast path, then general path); relay 2 hits the
        # validator's cache and keeps the answer; relay 3 asks nobody.
        self.assertEqual((self.validator.validations, self.validator.lookups), (1, 3))
        self.h.clock.advance(11)
        self.validator.cached.clear()  # e.g. the token expired meanwhile
        self.validator.hold = []
        self.relay("late")
        self.assertEqual(self.validator.lookups, 5)
        self.assertEqual(len(self.validator.hold), 1)  # validated again, async
        self.assertEqual(self.candidates(self.receiver), ["c0", "c1", "c2"])

    def test_session_credential_is_per_token(self) -> None:
        """Another token on the same socket is checked on its own: a valid token
        of another actor does not ride on the session's cached one."""
        other = self.h.register(self.h.open()[0], "other")
        self.relay("warm")
        self.relay("theirs", credential=token_for(other))
        error = self.sender.sent[-1].server_to_actr.error
        self.assertEqual((error.code, error.message), (403, messages.SOURCE_MISMATCH))
        self.assertEqual(self.candidates(self.receiver), ["warm"])

    def test_forwarded_relay_is_restamped_without_token(self) -> None:
        """A relay forwarded on the fast path gets a new UUIDv4 id and no token."""
        self.relay("warm")
        sent_id = self.relay("fast")
        forwarded = self.receiver.sent[-1]
        self.assertNotEqual(forwarded.envelope_id, sent_id)
        self.assertEqual(len(forwarded.envelope_id), 36)
        self.assertEqual(forwarded.envelope_id[14], "4")
        self.assertFalse(forwarded.HasField("reply_for"))
        self.assertEqual(forwarded.timestamp.seconds, int(self.h.clock.seconds()))
        credential = forwarded.actr_relay.credential
        self.assertEqual(credential.encrypted_token, b"")
        self.assertEqual(credential.token_key_id, 0)
        self.assertTrue(forwarded.actr_relay.HasField("credential"))

    def test_spoofed_source_is_403_on_fast_path(self) -> None:
        """A cached token used with another source is refused, not forwarded."""
        self.relay("warm")
        other = actr_pb2.ActrId()
        other.CopyFrom(self.source)
        other.serial_number += 100
        spoof_id = self.relay("spoof", source=other)
        error = self.sender.sent[-1].server_to_actr.error
        self.assertEqual((error.code, error.message), (403, messages.SOURCE_MISMATCH))
        self.assertEqual(self.sender.sent[-1].reply_for, spoof_id)
        self.assertEqual(self.candidates(self.receiver), ["warm"])

    def test_acl_still_applies_on_fast_path(self) -> None:
        """A cached credential does not bypass the ACL of the target."""
        self.relay("warm")
        self.h.realms.acl.clear()
        self.relay("denied")
        error = self.sender.sent[-1].server_to_actr.error
        self.assertEqual((error.code, error.message), (403, messages.ACL_DENIED))
        self.assertEqual(self.candidates(self.receiver), ["warm"])

    def test_uncached_relays_keep_order_behind_a_waiting_one(self) -> None:
        """While the first relay waits for validation, later ones queue in order."""
        self.validator.hold = []
        self.relay("first")
        self.relay("second")
        self.assertEqual(self.candidates(self.receiver), [])
        self.assertEqual(len(self.validator.hold), 1)
        while self.validator.hold:
            self.validator.hold.pop(0).callback(None)
        self.assertEqual(self.candidates(self.receiver), ["first", "second"])

    def test_realm_is_checked_before_the_cache(self) -> None:
        """A relay from an unusable realm is refused even with a cached token."""
        self.relay("warm")
        bad = actr_pb2.ActrId()
        bad.CopyFrom(self.source)
        bad.realm.realm_id = 999
        self.relay("bad", source=bad)
        error = self.sender.sent[-1].server_to_actr.error
        self.assertEqual(error.code, 403)
        self.assertTrue(error.message.startswith(messages.REALM_FAILED))


class RoleNegotiationDeliveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.answerer_session, self.answerer = self.h.open("answer")
        self.target = self.h.register(self.answerer_session, "svc", "caller")
        self.caller_session, self.caller = self.h.open()
        self.source = self.h.register(self.caller_session, "caller")

    def negotiate(self, target: actr_pb2.ActrId) -> None:
        """Send a role negotiation from the caller to ``target``."""
        envelope = envelope_with_id()
        relay = envelope.actr_relay
        relay.source.CopyFrom(self.source)
        relay.credential.CopyFrom(token_for(self.source))
        relay.target.CopyFrom(target)
        negotiation = relay.role_negotiation
        getattr(negotiation, "from").CopyFrom(self.source)
        negotiation.to.CopyFrom(target)
        self.h.service.handle(self.caller_session, envelope)

    def assignments(self, connection: FakeConnection) -> list[signaling_pb2.ActrRelay]:
        return [
            e.actr_relay
            for e in connection.sent
            if e.HasField("actr_relay") and e.actr_relay.HasField("role_assignment")
        ]

    def test_assignment_reaches_party_matched_by_realm_and_serial(self) -> None:
        """A party named with another type but its realm and serial still gets one."""
        other_type = actr_pb2.ActrId()
        other_type.CopyFrom(self.target)
        other_type.type.name = "renamed"
        self.negotiate(other_type)
        mine = self.assignments(self.caller)
        theirs = self.assignments(self.answerer)
        self.assertEqual((len(mine), len(theirs)), (1, 1))
        self.assertEqual(theirs[0].source, self.source)
        self.assertEqual(theirs[0].target, other_type)
        self.assertEqual(theirs[0].credential.encrypted_token, b"")
        self.assertNotEqual(
            mine[0].role_assignment.is_offerer, theirs[0].role_assignment.is_offerer
        )
        # Roles are still looked up by full ActrId: the "answer" socket does
        # not count for an id naming another type.
        self.assertFalse(mine[0].role_assignment.remote_fixed)
        self.assertEqual(self.h.service.metrics.relays["role_assignment"], 1)

    def test_answer_role_of_exact_party_is_honoured(self) -> None:
        """The party named by its exact ActrId with webrtc_role=answer answers."""
        self.negotiate(self.target)
        mine = self.assignments(self.caller)
        theirs = self.assignments(self.answerer)
        self.assertEqual((len(mine), len(theirs)), (1, 1))
        self.assertTrue(mine[0].role_assignment.is_offerer)
        self.assertTrue(mine[0].role_assignment.remote_fixed)
        self.assertFalse(theirs[0].role_assignment.is_offerer)
        self.assertFalse(theirs[0].role_assignment.remote_fixed)

    def test_missing_party_is_skipped(self) -> None:
        """A negotiation with an offline target still answers the sender alone."""
        self.h.service.session_closed(self.answerer_session)
        sent_before = len(self.answerer.sent)
        self.negotiate(self.target)
        self.assertEqual(len(self.assignments(self.caller)), 1)
        self.assertEqual(len(self.answerer.sent), sent_before)


class BusDeliveryTests(SynchronousTestCase):
    """What another node (or worker) sends here through the bus."""

    def setUp(self) -> None:
        self.h = Harness()
        self.session, self.connection = self.h.open()
        self.actor = self.h.register(self.session, "svc")
        self.connection.sent.clear()

    def test_an_encoded_relay_is_written_as_is_and_flushed_after_the_read(self) -> None:
        """A DELIVER with a flow goes to the socket unparsed; the socket is
        flushed once when the bus says its read is done, not per message."""
        envelope = envelope_with_id()
        envelope.actr_relay.target.CopyFrom(self.actor)
        envelope.actr_relay.ice_candidate.candidate = "from-elsewhere"
        key = messages.actor_key(self.actor)
        service = self.h.service
        for _ in range(3):
            service._on_bus(
                BusMessage(
                    DELIVER,
                    key,
                    self.session.id,
                    messages.encode(envelope),
                    "other-node",
                    flow="ice_candidate",
                )
            )
        self.assertEqual(len(self.connection.sent), 3)
        self.assertEqual(self.connection.flushes, 0)
        service._flush_bus_writes()
        self.assertEqual(self.connection.flushes, 1)
        service._flush_bus_writes()  # nothing new: no flush
        self.assertEqual(self.connection.flushes, 1)
        self.assertEqual(service.metrics.messages_out["ice_candidate"], 3)

    def test_a_closed_session_is_not_flushed(self) -> None:
        """A socket that closed between the message and the read's end is left alone."""
        key = messages.actor_key(self.actor)
        self.h.service._on_bus(
            BusMessage(DELIVER, key, self.session.id, b"", "n", flow="x")
        )
        self.h.service.session_closed(self.session)
        self.h.service._flush_bus_writes()
        self.assertEqual(self.connection.flushes, 0)
