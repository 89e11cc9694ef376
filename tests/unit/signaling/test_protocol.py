"""The signaling WebSocket protocol in memory: compact per-connection state."""

from __future__ import annotations

from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.settings import MessageRateLimit, SignalingConfig
from actrix.core.websocket import AUTOBAHN_STATE, configure
from actrix.signaling.protocol import SignalingFactory, SignalingProtocol
from tests.unit.signaling.fakes import Harness, envelope_with_id

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HANDSHAKE = (
    b"GET /signaling/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes) -> bytes:
    """A masked binary frame (zero mask key, so the payload goes as is)."""
    assert len(payload) < 126
    return bytes((0x82, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def server_frames(data: bytes) -> list[bytes]:
    """Payloads of the unmasked binary frames in ``data`` (short ones only)."""
    payloads = []
    while data:
        size = data[1] & 0x7F
        assert size < 126
        payloads.append(data[2 : 2 + size])
        data = data[2 + size :]
    return payloads


def build(factory: Any) -> Any:
    """``factory.buildProtocol`` without Twisted's optional return type."""
    return factory.buildProtocol(PEER)


def connect(test: SynchronousTestCase, protocol: Any) -> StringTransport:
    """Open ``protocol`` over a StringTransport; lose the connection at cleanup.

    Autobahn schedules its handshake timers on the global reactor (through
    txaio), whatever reactor the factory was given; losing the connection
    cancels them, so no later test finds them pending.
    """
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    test.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
    protocol.dataReceived(HANDSHAKE)
    return transport


class CompactStateTests(SynchronousTestCase):
    def test_state_list_covers_what_autobahn_sets(self) -> None:
        """Every non-option attribute of a plain Autobahn connection has a slot."""

        class Echo(WebSocketServerProtocol):
            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                self.sendMessage(payload, isBinary)

        factory = WebSocketServerFactory()
        factory.protocol = Echo
        factory.setProtocolOptions(autoPingInterval=0)
        protocol = build(factory)
        transport = connect(self, protocol)
        protocol.dataReceived(client_frame(b"hi"))
        self.assertTrue(transport.value().endswith(b"\x82\x02hi"))
        options = set(WebSocketServerProtocol.CONFIG_ATTRS)
        self.assertEqual(set(vars(protocol)) - options - set(AUTOBAHN_STATE), set())

    def test_open_connection_has_no_instance_dict_entries(self) -> None:
        """An open socket keeps its state in slots and drops its handshake data."""
        h = Harness()
        config = SignalingConfig(message_rate=MessageRateLimit(enabled=False))
        factory = SignalingFactory(h.service, config, h.clock, h.clock)
        protocol: SignalingProtocol = build(factory)
        self.assertIsInstance(protocol, SignalingProtocol)
        transport = connect(self, protocol)
        self.assertEqual(protocol.state, WebSocketServerProtocol.STATE_OPEN)
        self.assertEqual(vars(protocol), {})
        self.assertIsNone(protocol.http_headers)
        self.assertIsNone(protocol.http_request_data)
        options = type(protocol).__dict__
        self.assertEqual(options["maxMessagePayloadSize"], config.max_message_size)
        self.assertFalse(options["failByDrop"])

        transport.clear()
        envelope = envelope_with_id()
        envelope.actr_to_server.source.realm.realm_id = 1
        envelope.actr_to_server.ping.power_reserve = 1.0
        protocol.dataReceived(client_frame(envelope.SerializePartialToString()))
        (reply,) = server_frames(transport.value())
        self.assertIn(envelope.envelope_id.encode(), reply)

    def test_send_queue_becomes_a_deque_on_first_use(self) -> None:
        """The stand-in send queue is empty until Autobahn queues something."""
        h = Harness()
        factory = SignalingFactory(h.service, SignalingConfig(), h.clock, h.clock)
        protocol: Any = build(factory)
        connect(self, protocol)
        self.assertEqual(len(protocol.send_queue), 0)
        self.assertNotIsInstance(protocol.send_queue, deque)
        with self.assertRaises(IndexError):
            protocol.send_queue.popleft()
        protocol.send_queue.append((b"queued", True))
        self.assertIsInstance(protocol.send_queue, deque)
        self.assertEqual(list(protocol.send_queue), [(b"queued", True)])

    def test_options_follow_the_factory(self) -> None:
        """Each factory's sockets carry that factory's frame size limit."""
        h = Harness()
        small = SignalingFactory(
            h.service, SignalingConfig(max_message_size=2048), h.clock, h.clock
        )
        large = SignalingFactory(
            h.service, SignalingConfig(max_message_size=8192), h.clock, h.clock
        )
        for factory, size in ((small, 2048), (large, 8192)):
            protocol = build(factory)
            self.assertEqual(protocol.maxFramePayloadSize, size)


def masked_frame(payload: bytes, key: bytes, first: int = 0x82) -> bytes:
    """A client frame with a real masking key."""
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    else:
        header = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class Recorder(SignalingProtocol):
    """Keeps what reaches onMessage instead of handing it to the service."""

    __slots__ = ("got",)
    got: list[tuple[bytes, bool]]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.got.append((payload, isBinary))


class ReceiveTests(SynchronousTestCase):
    def setUp(self) -> None:
        h = Harness()
        config = SignalingConfig(max_message_size=1024)
        self.factory = SignalingFactory(h.service, config, h.clock, h.clock)
        self.factory.protocol = configure(self.factory, Recorder)
        self.protocol: Any = build(self.factory)
        self.protocol.got = []
        self.transport = connect(self, self.protocol)

    def test_frames_in_one_read_arrive_in_order(self) -> None:
        """Several masked frames in one read are each delivered, in order."""
        payloads = [bytes([i]) * size for i, size in enumerate((0, 1, 125, 126, 700))]
        data = b"".join(
            masked_frame(p, bytes((i + 1, 7, 99, 200))) for i, p in enumerate(payloads)
        )
        self.protocol.dataReceived(data)
        self.assertEqual(self.protocol.got, [(p, True) for p in payloads])

    def test_frames_split_across_reads(self) -> None:
        """Frames cut at every byte boundary still arrive whole and in order."""
        payloads = [b"first" * 10, b"second" * 30, b"third"]
        data = b"".join(masked_frame(p, b"\x01\x02\x03\x04") for p in payloads)
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.protocol.got, [(p, True) for p in payloads])

    def test_other_frames_take_autobahns_path(self) -> None:
        """Text, ping and fragmented frames between binary ones keep their meaning."""
        key = b"\x09\x08\x07\x06"
        data = (
            masked_frame(b"one", key)
            + masked_frame(b"text", key, first=0x81)
            + masked_frame(b"ping", key, first=0x89)
            + masked_frame(b"fr", key, first=0x02)
            + masked_frame(b"ag", key, first=0x80)
            + masked_frame(b"two", key)
        )
        self.transport.clear()
        self.protocol.dataReceived(data)
        self.assertEqual(
            self.protocol.got,
            [(b"one", True), (b"text", False), (b"frag", True), (b"two", True)],
        )
        self.assertIn(b"\x8a\x04ping", self.transport.value())

    def test_oversized_frame_is_refused_by_autobahn(self) -> None:
        """A frame over max_message_size is not delivered; the socket closes 1009."""
        self.transport.clear()
        self.protocol.dataReceived(masked_frame(b"x" * 1025, b"\x01\x01\x01\x01"))
        self.assertEqual(self.protocol.got, [])
        self.assertTrue(self.transport.value().startswith(b"\x88"))
        self.assertEqual(self.transport.value()[2:4], (1009).to_bytes(2, "big"))

    def test_unmasked_frame_is_a_protocol_error(self) -> None:
        """An unmasked client frame is refused (close 1002), not delivered."""
        self.transport.clear()
        self.protocol.dataReceived(b"\x82\x03abc")
        self.assertEqual(self.protocol.got, [])
        self.assertEqual(self.transport.value()[2:4], (1002).to_bytes(2, "big"))
