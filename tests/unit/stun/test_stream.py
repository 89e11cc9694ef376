"""STUN-only TCP/TLS connections: producer, stall abort and close bounds."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from actrix.stun import codec
from actrix.stun.protocol import BindingResponder, StunTcpFactory, StunTcpProtocol
from actrix.stun.stream import IDLE_TIMEOUT, STALL_TIMEOUT
from tests.unit.stun.helpers import AbortableTransport, LogEvents

CLIENT = ("192.0.2.10", 40000)
BINDING = codec.encode(codec.BINDING_REQUEST, b"0123456789ab", [])


class _Counters:
    """The counters the Binding and stream paths increment."""

    def __init__(self) -> None:
        self.bindings = 0
        self.malformed = 0
        self.stream_aborted = 0


class StunStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = _Counters()
        self.clock = Clock()
        self.proto = StunTcpFactory(
            BindingResponder("", self.metrics), self.metrics, self.clock
        ).buildProtocol(IPv4Address("TCP", *CLIENT))
        self.transport = AbortableTransport(IPv4Address("TCP", *CLIENT))
        self.proto.makeConnection(self.transport)
        self.logged = LogEvents()
        globalLogPublisher.addObserver(self.logged)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged)

    def warnings(self) -> list[Any]:
        return [e for e in self.logged if e["log_level"] == LogLevel.warn]

    def test_registers_as_streaming_producer(self) -> None:
        """The connection is its transport's push producer and pauses its reads."""
        self.assertIs(self.transport.producer, self.proto)
        self.assertTrue(self.transport.streaming)
        self.proto.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_client_not_reading_is_aborted(self) -> None:
        """Bindings whose answers are never read: aborted after the stall timeout."""
        self.proto.dataReceived(BINDING * 3)
        self.proto.pauseProducing()
        self.clock.advance(STALL_TIMEOUT - 0.1)
        self.assertEqual(self.transport.aborts, 0)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertEqual(self.transport.aborts, 1)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.metrics.stream_aborted, 1)
        self.assertEqual(self.metrics.bindings, 3)
        [warning] = self.warnings()
        self.assertEqual(warning["client"], CLIENT[0])
        self.assertEqual(warning["kind"], "STUN tcp")
        self.proto.connectionLost()
        self.clock.advance(IDLE_TIMEOUT * 2)
        self.assertEqual(self.transport.aborts, 1)
        self.assertEqual(self.metrics.stream_aborted, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abort_stops_the_idle_timer(self) -> None:
        """An aborted connection whose loss is not yet reported closes no more."""
        self.proto.pauseProducing()
        self.clock.advance(STALL_TIMEOUT)
        self.assertEqual(self.transport.aborts, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_slow_reader_is_not_aborted(self) -> None:
        """A transport that drains within the stall timeout each time stays open."""
        for _ in range(5):
            self.proto.pauseProducing()
            self.clock.advance(STALL_TIMEOUT - 1)
            self.proto.resumeProducing()
            self.proto.dataReceived(BINDING)
            self.clock.advance(1)
        self.assertEqual(self.transport.aborts, 0)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.metrics.stream_aborted, 0)
        self.assertEqual(self.warnings(), [])

    def test_idle_close_that_never_drains_is_aborted(self) -> None:
        """An idle close lets go of the producer and is aborted if it never ends."""
        self.proto.pauseProducing()
        self.proto.resumeProducing()
        self.clock.advance(IDLE_TIMEOUT + 0.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.transport.aborts, 0)
        self.clock.advance(STALL_TIMEOUT)
        self.assertEqual(self.transport.aborts, 1)
        self.assertEqual(self.metrics.stream_aborted, 1)

    def test_junk_while_paused_is_aborted_from_the_pause(self) -> None:
        """Junk sent while paused closes; the abort still counts from the pause."""
        self.proto.pauseProducing()
        self.clock.advance(5)
        self.proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.metrics.malformed, 1)
        self.clock.advance(STALL_TIMEOUT - 5 - 0.1)
        self.assertEqual(self.transport.aborts, 0)
        self.clock.advance(0.2)
        self.assertEqual(self.transport.aborts, 1)

    def test_completed_close_is_not_aborted(self) -> None:
        """A close that completes leaves no timer behind."""
        self.proto.pauseProducing()
        self.proto.dataReceived(b"\xff" * 20)
        self.proto.connectionLost()
        self.clock.advance(STALL_TIMEOUT * 3)
        self.assertEqual(self.transport.aborts, 0)
        self.assertEqual(self.metrics.stream_aborted, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_oversized_message_closes_before_it_arrives(self) -> None:
        """A header announcing more than MAX_REQUEST_STREAM bytes closes at once."""
        big = codec.encode(
            codec.BINDING_REQUEST,
            b"0123456789ab",
            [(codec.SOFTWARE, bytes(codec.MAX_REQUEST_STREAM))],
        )
        self.proto.dataReceived(big[:20])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_stall_timeout_is_configurable(self) -> None:
        """The factory passes its stall timeout to each connection."""
        proto = StunTcpFactory(
            BindingResponder("", self.metrics), self.metrics, self.clock, 30.0, 2.0
        ).buildProtocol(IPv4Address("TCP", *CLIENT))
        transport = AbortableTransport(IPv4Address("TCP", *CLIENT))
        directlyProvides(transport, ISSLTransport)  # looks like TLS
        proto.makeConnection(transport)
        proto.pauseProducing()
        self.clock.advance(2.1)
        self.assertEqual(transport.aborts, 1)
        self.assertEqual(self.warnings()[-1]["kind"], "STUN tls")

    def test_answers_use_the_peer_address(self) -> None:
        """The Binding answer reflects the address the connection came from."""
        proto = StunTcpProtocol(
            BindingResponder("", self.metrics), self.metrics, Clock()
        )
        transport = AbortableTransport(IPv4Address("TCP", *CLIENT))
        proto.makeConnection(transport)
        proto.dataReceived(BINDING)
        reply = codec.decode(transport.value())
        self.assertEqual(
            codec.decode_xor_address(
                reply.attrs[codec.XOR_MAPPED_ADDRESS], reply.transaction_id
            ),
            CLIENT,
        )


class StreamLogThrottleTests(SynchronousTestCase):
    """Defect 9: closing junk connections logs one line per (IP, reason) a minute."""

    def setUp(self) -> None:
        self.metrics = _Counters()
        self.clock = Clock()
        self.factory = StunTcpFactory(
            BindingResponder("", self.metrics), self.metrics, self.clock
        )
        self.logged = LogEvents()
        globalLogPublisher.addObserver(self.logged)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged)

    def _junk(self, client: tuple[str, int], data: bytes = b"\xff" * 20) -> None:
        proto = self.factory.buildProtocol(IPv4Address("TCP", *client))
        transport = AbortableTransport(IPv4Address("TCP", *client))
        proto.makeConnection(transport)
        proto.dataReceived(data)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost()

    def closes(self) -> list[Any]:
        return [e for e in self.logged if e.get("why") is not None]

    def test_junk_connections_log_once_per_source_and_reason(self) -> None:
        """1 000 junk connections from one IP log one line; other IPs and reasons
        get their own; after a minute the next line counts the suppressed ones."""
        for port in range(1000):
            self._junk(("192.0.2.1", port))
        self.assertEqual(self.metrics.malformed, 1000)
        self.assertEqual(len(self.closes()), 1)
        self._junk(("192.0.2.2", 1))
        self._junk(("192.0.2.1", 1), codec.encode_channel_data(0x4001, b"x"))
        self.assertEqual(
            [(e["client"], e["why"]) for e in self.closes()],
            [
                ("192.0.2.1", "not STUN"),
                ("192.0.2.2", "not STUN"),
                ("192.0.2.1", "ChannelData on a STUN-only port"),
            ],
        )
        self.clock.advance(61)
        self._junk(("192.0.2.1", 2))
        self.assertEqual(self.closes()[-1]["suppressed"], 999)

    def test_idle_closes_are_throttled(self) -> None:
        """Connections from one IP left idle log one idle line between them."""
        for port in range(50):
            proto = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.3", port))
            proto.makeConnection(
                AbortableTransport(IPv4Address("TCP", "192.0.2.3", port))
            )
        self.clock.advance(IDLE_TIMEOUT + 1)
        idle = [e for e in self.logged if "idle" in e["log_format"]]
        self.assertEqual(len(idle), 1)
