"""The shared WebSocket edge: frame helpers, message rate and connection caps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.websocket import (
    EdgeLimits,
    MessageRate,
    TokenBucket,
    frame_bytes,
    unmask,
)


class FrameTests(SynchronousTestCase):
    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_unmask_is_bytewise_xor(self, payload: bytes, key: bytes) -> None:
        """unmask equals RFC 6455 §5.3 byte-by-byte XOR, and is its own inverse."""
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.assertEqual(unmask(payload, key), expected)
        self.assertEqual(unmask(expected, key), payload)

    def test_frame_lengths(self) -> None:
        """7-bit, 16-bit and 64-bit length forms; opcode text or binary."""
        self.assertEqual(frame_bytes(b"hi", False), b"\x81\x02hi")
        self.assertEqual(frame_bytes(b"x" * 126, True)[:4], b"\x82\x7e\x00\x7e")
        self.assertEqual(
            frame_bytes(b"x" * 70000, True)[:10],
            b"\x82\x7f" + (70000).to_bytes(8, "big"),
        )


class RateTests(SynchronousTestCase):
    def test_token_bucket(self) -> None:
        """A bucket spends its burst, then refills at its rate."""
        bucket = TokenBucket(2.0, 2.0, 0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(3)], [True, True, False])
        self.assertTrue(bucket.take(0.5))
        self.assertFalse(bucket.full(0.5))
        self.assertTrue(bucket.full(5.0))

    def test_message_rate_notifies_once_a_second_and_closes(self) -> None:
        """Drops notify at most once a second; too many drops in a window close."""
        rate = MessageRate(1.0, 1.0, 0.0, max_drops=3, window=60.0)
        self.assertEqual(rate.take(0.0), "ok")
        self.assertEqual(rate.take(0.0), "notify")
        self.assertEqual(rate.take(0.1), "drop")
        self.assertEqual(rate.take(0.2), "drop")
        self.assertEqual(rate.take(0.3), "close")


class LimitTests(SynchronousTestCase):
    def test_caps(self) -> None:
        """The per-IP cap answers 429, the total cap 503; release frees a slot."""
        limits = EdgeLimits(max_total=3, max_per_ip=2)
        self.assertIsNone(limits.admit("a"))
        self.assertIsNone(limits.admit("a"))
        self.assertEqual(limits.admit("a"), 429)
        self.assertIsNone(limits.admit("b"))
        self.assertEqual(limits.admit("c"), 503)
        limits.release("a")
        self.assertIsNone(limits.admit("c"))
        self.assertEqual(limits.total, 3)
