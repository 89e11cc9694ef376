"""Tests for actrix.ais.ratelimit: per-IP token buckets."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.ais.ratelimit import IpRateLimiter


class LimiterTests(SynchronousTestCase):
    """Burst, refill, isolation and the size bound."""

    def test_burst_then_refill(self) -> None:
        """Burst credits are spent, then one returns every 1/rate seconds."""
        clock = Clock()
        limiter = IpRateLimiter(clock, rate=0.5, burst=3)
        self.assertEqual([limiter.allow("a") for _ in range(4)], [True] * 3 + [False])
        self.assertEqual(limiter.retry_after("a"), 2)
        clock.advance(1.9)
        self.assertFalse(limiter.allow("a"))
        clock.advance(0.2)
        self.assertTrue(limiter.allow("a"))

    def test_ips_are_independent(self) -> None:
        """One IP's exhaustion does not affect another."""
        limiter = IpRateLimiter(Clock(), rate=1, burst=1)
        self.assertTrue(limiter.allow("a"))
        self.assertFalse(limiter.allow("a"))
        self.assertTrue(limiter.allow("b"))

    def test_bounded(self) -> None:
        """The table never exceeds max_entries."""
        clock = Clock()
        limiter = IpRateLimiter(clock, rate=1, burst=2, max_entries=10)
        for i in range(100):
            limiter.allow(f"10.0.0.{i}")
        self.assertLessEqual(len(limiter), 10)

    def test_full_table_is_not_rescanned_per_address(self) -> None:
        """Overflowing a table of draining buckets frees a quarter of it at once."""

        class CountingLimiter(IpRateLimiter):
            prunes = 0

            def _prune(self, now: float) -> None:
                self.prunes += 1
                super()._prune(now)

        limiter = CountingLimiter(Clock(), rate=0.001, burst=5, max_entries=100)
        for i in range(100):
            limiter.allow(f"10.0.0.{i}")
        for i in range(25):
            self.assertTrue(limiter.allow(f"10.1.0.{i}"))
        self.assertEqual(limiter.prunes, 1)
        self.assertLessEqual(len(limiter), 100)
