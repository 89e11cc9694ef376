"""LogThrottle: one log line per source and reason per interval, bounded table."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.logthrottle import LogThrottle


class LogThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.throttle = LogThrottle(self.clock, interval=60.0, max_keys=4)

    def test_first_line_per_ip_and_reason_passes(self) -> None:
        """Each new IP, and each new reason of an IP, gets its first line."""
        self.assertEqual(self.throttle.admit("192.0.2.1", "bad_integrity"), 0)
        self.assertEqual(self.throttle.admit("192.0.2.1", "rate limit"), 0)
        self.assertEqual(self.throttle.admit("192.0.2.2", "bad_integrity"), 0)

    def test_repeats_are_suppressed_then_counted_in_the_next_line(self) -> None:
        """Lines within the interval are dropped; the next one reports how many."""
        self.assertEqual(self.throttle.admit("192.0.2.1", "rate limit"), 0)
        for _ in range(5):
            self.clock.advance(10)
            self.assertIsNone(self.throttle.admit("192.0.2.1", "rate limit"))
        self.clock.advance(9.9)
        self.assertIsNone(self.throttle.admit("192.0.2.1", "rate limit"))
        self.clock.advance(0.2)
        self.assertEqual(self.throttle.admit("192.0.2.1", "rate limit"), 6)
        self.assertIsNone(self.throttle.admit("192.0.2.1", "rate limit"))
        self.clock.advance(60)
        self.assertEqual(self.throttle.admit("192.0.2.1", "rate limit"), 1)

    def test_full_table_sends_new_ips_to_one_overflow_entry(self) -> None:
        """With the table full of recent entries, new IPs share one line per reason."""
        for i in range(4):
            self.assertEqual(self.throttle.admit(f"192.0.2.{i}", "expired"), 0)
        self.assertEqual(self.throttle.admit("198.51.100.1", "expired"), 0)
        for i in range(2, 50):
            self.assertIsNone(self.throttle.admit(f"198.51.100.{i}", "expired"))
        self.assertEqual(len(self.throttle), 5)  # four IPs and the overflow entry
        self.clock.advance(60)
        # The next new IP prunes the aged entries and gets a slot of its own.
        self.assertEqual(self.throttle.admit("203.0.113.1", "expired"), 0)
        self.assertLessEqual(len(self.throttle), 4)

    def test_overflow_entry_reports_its_suppressed_count(self) -> None:
        """Lines dropped under the overflow entry are reported with its next line."""
        for i in range(4):
            self.throttle.admit(f"192.0.2.{i}", "expired")
        self.assertEqual(self.throttle.admit("198.51.100.1", "expired"), 0)
        self.assertIsNone(self.throttle.admit("198.51.100.2", "expired"))
        self.assertIsNone(self.throttle.admit("198.51.100.3", "expired"))
        self.clock.advance(60)
        for i in range(4):  # the four IPs are still active: the table stays full
            self.assertEqual(self.throttle.admit(f"192.0.2.{i}", "expired"), 0)
        self.clock.advance(1)
        self.assertEqual(self.throttle.admit("198.51.100.4", "expired"), 2)

    def test_table_stays_bounded_under_many_ips(self) -> None:
        """Thousands of IPs over time never grow the table past its bound."""
        throttle = LogThrottle(self.clock, interval=60.0, max_keys=64)
        for i in range(5000):
            self.clock.advance(0.05)
            throttle.admit(f"2001:db8::{i:x}", "bad_integrity")
            throttle.admit(f"2001:db8::{i:x}", "rate limit")
            self.assertLessEqual(len(throttle), 64 + 2)
