"""Nonces and the per-IP request window."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.turn.limits import MAX_VERIFIED_NONCES, NonceIssuer, RequestWindow


class NonceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.nonces = NonceIssuer(self.clock, 60, secret=b"k" * 16)

    def test_nonce_is_bound_to_ip_and_lifetime_even_when_remembered(self) -> None:
        """A verified (cached) nonce stays bound to its IP and its expiry."""
        nonce = self.nonces.issue("192.0.2.1")
        self.assertEqual(len(nonce), 24)
        self.assertTrue(self.nonces.valid(nonce, "192.0.2.1"))
        self.assertTrue(self.nonces.valid(nonce, "192.0.2.1"))  # from the cache
        self.assertFalse(self.nonces.valid(nonce, "192.0.2.2"))
        self.clock.advance(61)
        self.assertFalse(self.nonces.valid(nonce, "192.0.2.1"))

    def test_forged_or_foreign_nonces_fail(self) -> None:
        """Another secret's nonce, a tampered one and junk are refused."""
        other = NonceIssuer(self.clock, 60, secret=b"x" * 16).issue("192.0.2.1")
        self.assertFalse(self.nonces.valid(other, "192.0.2.1"))
        nonce = self.nonces.issue("192.0.2.1")
        tampered = nonce[:8] + bytes([nonce[8] ^ 1]) + nonce[9:]
        for bad in (tampered, b"", b"\xff" * 24, b"zzzzzzzz" + nonce[8:]):
            self.assertFalse(self.nonces.valid(bad, "192.0.2.1"))

    def test_remembered_nonces_are_bounded(self) -> None:
        """The verified-nonce table is cleared when full."""
        for i in range(MAX_VERIFIED_NONCES + 3):
            ip = f"10.0.{i >> 8 & 255}.{i & 255}"
            self.assertTrue(self.nonces.valid(self.nonces.issue(ip), ip))
        self.assertLessEqual(len(self.nonces._verified), MAX_VERIFIED_NONCES)


class RequestWindowTests(SynchronousTestCase):
    def test_window_table_is_bounded(self) -> None:
        """New sources past the table size share one overflow counter."""
        window = RequestWindow(Clock(), 2, max_sources=3)
        self.assertTrue(all(window.allow(f"192.0.2.{i}") for i in range(3)))
        self.assertEqual(
            [window.allow(f"198.51.100.{i}") for i in range(4)],
            [True, True, False, False],
        )
        self.assertEqual(len(window), 4)

    def test_window_resets_every_second(self) -> None:
        """A source's count starts again in the next one-second window."""
        clock = Clock()
        window = RequestWindow(clock, 1)
        self.assertEqual([window.allow("a"), window.allow("a")], [True, False])
        clock.advance(1)
        self.assertTrue(window.allow("a"))
