"""Envelope decoding, URL identity parsing and the rate-limit buckets."""

from __future__ import annotations

import base64
import contextlib
import uuid

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.config import ConnectionRateLimit
from actrix.core.utf8 import invalid_string_field
from actrix.core.websocket import TokenBucket
from actrix.proto import signaling_pb2
from actrix.signaling import messages
from actrix.signaling.limits import ConnectionLimits


class DecodeTests(SynchronousTestCase):
    @given(st.binary(max_size=256))
    def test_decoding_any_bytes_raises_only_decode_error(self, data: bytes) -> None:
        """Arbitrary bytes decode to all-str strings, or raise one of our two errors."""
        with contextlib.suppress(messages.DecodeError, messages.InvalidString):
            envelope = messages.decode_envelope(data)
            self.assertIsNone(invalid_string_field(envelope))

    def test_bad_envelope_id_is_undecodable(self) -> None:
        """An envelope_id that is not UTF-8 makes the whole frame undecodable."""
        envelope = _spec_request("QQQQ", "echo")
        data = _spoil(messages.encode(envelope), b"QQQQ")
        with self.assertRaises(messages.DecodeError):
            messages.decode_envelope(data)

    def test_bad_nested_string_names_its_field(self) -> None:
        """A bad string deep in the flow raises InvalidString with its path and id."""
        data = _spoil(messages.encode(_spec_request("id-1", "QQQQ")), b"QQQQ")
        with self.assertRaises(messages.InvalidString) as caught:
            messages.decode_envelope(data)
        self.assertEqual(caught.exception.envelope_id, "id-1")
        self.assertEqual(
            caught.exception.field, "actr_to_server.get_service_spec_request.name"
        )

    def test_bad_repeated_string_names_its_index(self) -> None:
        """A bad element of a repeated string field is reported with its index."""
        envelope = _spec_request("id-2", "echo")
        envelope.actr_to_server.ping.sticky_client_ids.extend(["ok", "QQQQ"])
        data = _spoil(messages.encode(envelope), b"QQQQ")
        with self.assertRaises(messages.InvalidString) as caught:
            messages.decode_envelope(data)
        self.assertEqual(
            caught.exception.field, "actr_to_server.ping.sticky_client_ids[1]"
        )

    def test_bad_source_type_is_found_behind_a_binary_token(self) -> None:
        """A bad manufacturer is found although the token makes the frame non-ASCII."""
        envelope = _spec_request("id-3", "echo")
        envelope.actr_to_server.source.type.manufacturer = "QQQQ"
        envelope.actr_to_server.credential.encrypted_token = bytes(range(256))
        data = _spoil(messages.encode(envelope), b"QQQQ")
        with self.assertRaises(messages.InvalidString) as caught:
            messages.decode_envelope(data)
        self.assertEqual(
            caught.exception.field, "actr_to_server.source.type.manufacturer"
        )

    def test_valid_non_ascii_strings_decode(self) -> None:
        """Real UTF-8 (accents, emoji) and binary tokens are accepted unchanged."""
        envelope = _spec_request("id-4", "caf\u00e9-\U0001f600")
        envelope.actr_to_server.credential.encrypted_token = bytes(range(256))
        decoded = messages.decode_envelope(messages.encode(envelope))
        self.assertEqual(
            decoded.actr_to_server.get_service_spec_request.name, "caf\u00e9-\U0001f600"
        )

    def test_invalid_string_answer_is_a_400_envelope_error(self) -> None:
        """The answer is envelope_error 400 "Invalid protobuf: ..." for the request."""
        error = messages.InvalidString(
            "id-5", "peer_to_server.register_request.actr_type.name"
        )
        answer = messages.invalid_string(3.0, error)
        self.assertEqual(answer.reply_for, "id-5")
        self.assertEqual(answer.envelope_error.code, 400)
        self.assertEqual(
            answer.envelope_error.message,
            "Invalid protobuf: peer_to_server.register_request.actr_type.name"
            " is not valid UTF-8",
        )

    def test_envelope_round_trip_keeps_reply_for(self) -> None:
        """An error envelope survives encode/decode with code, text and reply_for."""
        envelope = messages.error_to_actor(5.0, messages.temp_target(), "abc", 401, "x")
        decoded = messages.decode_envelope(messages.encode(envelope))
        self.assertEqual(decoded.reply_for, "abc")
        self.assertEqual(decoded.server_to_actr.error.code, 401)
        self.assertEqual(decoded.timestamp.seconds, 5)

    def test_rate_limited_text(self) -> None:
        """The 429 envelope error has no reply_for and the §1.3 text."""
        envelope = messages.rate_limited(0, 10)
        self.assertFalse(envelope.HasField("reply_for"))
        self.assertEqual(
            envelope.envelope_error.message,
            "Too many messages. Limit: 10 messages/second",
        )


class UrlIdentityTests(SynchronousTestCase):
    def test_parses_identity(self) -> None:
        """actor_id, token (with a space for '+') and key id are read."""
        token = base64.b64encode(b"\xfb\xff\x01").decode()
        self.assertIn("+", token)
        parsed = messages.parse_url_identity(
            {
                "actor_id": ["1a@101/acme:echo:1.0"],
                "token": [token.replace("+", " ")],
                "token_key_id": ["7"],
            }
        )
        assert parsed is not None
        actr_id, credential = parsed
        self.assertEqual(actr_id.serial_number, 0x1A)
        self.assertEqual(credential.encrypted_token, b"\xfb\xff\x01")
        self.assertEqual(credential.token_key_id, 7)

    def test_malformed_identity_is_none(self) -> None:
        """Bad ids, bad base64 or a missing token yield no identity."""
        good = base64.b64encode(b"t").decode()
        for params in (
            {"actor_id": ["nope"], "token": [good]},
            {"actor_id": ["1@1/a:b"], "token": ["***"]},
            {"actor_id": ["1@1/a:b"]},
        ):
            self.assertIsNone(messages.parse_url_identity(params))

    def test_bad_key_id_is_zero(self) -> None:
        """An unparsable or out-of-range token_key_id reads as 0."""
        good = base64.b64encode(b"t").decode()
        for raw in ("x", "99999999999"):
            parsed = messages.parse_url_identity(
                {"actor_id": ["1@1/a:b"], "token": [good], "token_key_id": [raw]}
            )
            assert parsed is not None
            self.assertEqual(parsed[1].token_key_id, 0)


class LimitTests(SynchronousTestCase):
    def test_bucket_refills(self) -> None:
        """A bucket allows its burst, then one token per 1/rate seconds."""
        bucket = TokenBucket(2, 3, 0.0)
        self.assertEqual(
            [bucket.take(0.0) for _ in range(4)], [True, True, True, False]
        )
        self.assertTrue(bucket.take(0.5))
        self.assertFalse(bucket.take(0.5))

    def test_connection_limits(self) -> None:
        """Concurrency and rate refuse separately; release frees; prune forgets."""
        limits = ConnectionLimits(
            ConnectionRateLimit(per_minute=5, burst_size=3, max_concurrent_per_ip=2)
        )
        self.assertIsNone(limits.admit("a", 0))
        self.assertIsNone(limits.admit("a", 0))
        self.assertEqual(limits.admit("a", 0), "concurrency")
        limits.release("a")
        self.assertIsNone(limits.admit("a", 0))
        limits.release("a")
        self.assertEqual(limits.admit("a", 0), "rate")
        limits.release("a")
        limits.release("a")
        limits.prune(100)
        self.assertEqual(len(limits), 0)

    def test_disabled_limits_admit_everything(self) -> None:
        """With the limit disabled every connection is admitted."""
        limits = ConnectionLimits(
            ConnectionRateLimit(enabled=False, burst_size=1, max_concurrent_per_ip=1)
        )
        self.assertTrue(all(limits.admit("a", 0) is None for _ in range(10)))


class EnvelopeIdTests(SynchronousTestCase):
    def test_ids_are_distinct_uuid4_strings(self) -> None:
        """Both id sources give canonical random UUIDv4 strings, never repeating."""
        ids = messages.EnvelopeIds()
        seen = set()
        # More than one batch, so the refill is exercised too.
        for make in [ids] * (2 * messages.EnvelopeIds.BATCH + 3) + [
            messages.envelope_id
        ] * 20:
            text = make()
            parsed = uuid.UUID(text)
            self.assertEqual((parsed.version, parsed.variant), (4, uuid.RFC_4122))
            self.assertEqual(str(parsed), text)
            seen.add(text)
        self.assertEqual(len(seen), 2 * messages.EnvelopeIds.BATCH + 23)


def _spec_request(envelope_id: str, name: str) -> signaling_pb2.SignalingEnvelope:
    envelope = messages.new_envelope(1.0)
    envelope.envelope_id = envelope_id
    envelope.actr_to_server.get_service_spec_request.name = name
    return envelope


def _spoil(data: bytes, marker: bytes) -> bytes:
    """Replace ``marker`` by as many bytes that are not UTF-8 (0xff starts none)."""
    assert data.count(marker) == 1
    return data.replace(marker, b"\xff" * len(marker))
