"""The shared WebSocket edge: frame helpers, message rate and connection caps."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from actrix.core.websocket import (
    EdgeLimits,
    MessageRate,
    TokenBucket,
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


class LayoutTests(SynchronousTestCase):
    def test_slots_cover_what_autobahn_sets(self) -> None:
        """A connection made and opened keeps (almost) nothing in its __dict__."""
        from autobahn.twisted.websocket import WebSocketServerFactory
        from twisted.internet.error import ConnectionDone
        from twisted.internet.testing import StringTransport
        from twisted.python.failure import Failure

        from actrix.core.websocket import EdgeProtocol, configure, edge_options

        class Probe(EdgeProtocol):
            __slots__ = ()

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                pass

        factory = WebSocketServerFactory()
        factory.protocol = Probe
        edge_options(factory, 1024)
        self.assertTrue(issubclass(factory.protocol, Probe))
        self.assertIsNot(configure(factory, Probe), Probe)
        protocol: Any = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        self.assertEqual(sorted(vars(protocol)), [])
        protocol.connectionLost(Failure(ConnectionDone()))


class SendTests(SynchronousTestCase):
    def _open(self) -> tuple[Any, Any]:
        from autobahn.twisted.websocket import WebSocketServerFactory
        from twisted.internet.testing import StringTransport

        from actrix.core.websocket import EdgeProtocol, edge_options

        class Echo(EdgeProtocol):
            __slots__ = ()

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                self.send_frame(payload, isBinary)

        factory = WebSocketServerFactory()
        factory.protocol = Echo
        edge_options(factory, 1024)
        protocol: Any = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        transport.clear()
        return protocol, transport

    def test_frames_written_at_once_and_counted(self) -> None:
        """Autobahn's frame reaches the transport in the same call, and its
        octets are counted as Autobahn counts them."""
        protocol, transport = self._open()
        before = protocol.trafficStats.outgoingOctetsWireLevel
        # A masked client text frame "hi" (all-zero mask): echoed unmasked.
        protocol.dataReceived(b"\x81\x82\x00\x00\x00\x00hi")
        self.assertEqual(transport.value(), b"\x81\x02hi")
        self.assertEqual(protocol.trafficStats.outgoingOctetsWireLevel, before + 4)


class GarbageTests(SynchronousTestCase):
    def test_closed_connection_leaves_no_garbage_cycle(self) -> None:
        """An upgrade through the site, a message and a close leave nothing for
        the cyclic garbage collector: the HTTP channel and request, the
        connection and what it holds are all freed by reference counting."""
        import gc

        from autobahn.twisted.websocket import WebSocketServerFactory
        from twisted.internet.address import IPv4Address
        from twisted.internet.error import ConnectionDone
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from twisted.python.failure import Failure
        from twisted.web.resource import Resource

        from actrix.core.http import build_site
        from actrix.core.websocket import EdgeProtocol, UpgradeOnly, edge_options

        class Echo(EdgeProtocol):
            __slots__ = ()

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                self.send_bytes(payload)

        class Transport(StringTransport):
            protocol: Any = None

        factory = WebSocketServerFactory()
        factory.protocol = Echo
        edge_options(factory, 1024)
        root = Resource()
        root.putChild(b"ws", UpgradeOnly(factory))
        site = build_site(root, Clock())
        address = IPv4Address("TCP", "127.0.0.1", 40000)

        def one_connection() -> bytes:
            transport = Transport(peerAddress=address)
            channel = site.buildProtocol(address)
            transport.protocol = channel
            channel.makeConnection(transport)
            channel.dataReceived(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            protocol = transport.protocol
            self.assertIsInstance(protocol, Echo)
            protocol.dataReceived(b"\x82\x83\x00\x00\x00\x00abc")  # masked "abc"
            # As tcp.Connection.connectionLost: the transport lets go first.
            transport.protocol = None
            protocol.connectionLost(Failure(ConnectionDone()))
            written: bytes = transport.value()
            return written

        one_connection()  # first-use caches
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(gc.set_debug, 0)
        self.addCleanup(gc.garbage.clear)
        written = [one_connection() for _ in range(20)]
        self.assertTrue(all(w.endswith(b"\x82\x03abc") for w in written))
        gc.collect()
        kinds = sorted({type(o).__name__ for o in gc.garbage})
        self.assertEqual(kinds, [])
