"""Tests for actrix.core.listen's per-IP connection cap."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.listen import PerIpConnections, _CappedFactory


class PerIpTests(SynchronousTestCase):
    """Slots per address, released at close; refusals logged through a throttle."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)
        self.per_ip = PerIpConnections(2, self.clock, "http")
        self.factory = _CappedFactory(Factory.forProtocol(Protocol), self.per_ip)

    def _build(self, host: str) -> Protocol | None:
        return self.factory.buildProtocol(IPv4Address("TCP", host, 50000))

    def test_cap_per_address(self) -> None:
        """The third connection of one address is refused; another address is not."""
        self.assertIsNotNone(self._build("192.0.2.1"))
        self.assertIsNotNone(self._build("192.0.2.1"))
        self.assertIsNone(self._build("192.0.2.1"))
        self.assertIsNotNone(self._build("192.0.2.2"))
        self.per_ip.release("192.0.2.1")
        self.assertIsNotNone(self._build("192.0.2.1"))
        self.assertEqual(self.per_ip.refused, 1)

    def test_table_holds_only_open_addresses(self) -> None:
        """Releasing the last connection of an address forgets it."""
        self._build("192.0.2.1")
        self.per_ip.release("192.0.2.1")
        self.assertEqual(self.per_ip.open_count("192.0.2.1"), 0)
        self.assertEqual(self.per_ip._open, {})

    def test_refusals_logged_once_a_minute(self) -> None:
        """A thousand refused connections from one address write one warning."""
        self._build("192.0.2.1")
        self._build("192.0.2.1")
        for _ in range(1000):
            self._build("192.0.2.1")
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.clock.advance(60)
        self._build("192.0.2.1")
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warnings[-1]["suppressed"], 999)
