"""The signaling WebSocket protocol in memory: compact per-connection state."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.settings import MessageRateLimit, SignalingConfig
from actrix.signaling.protocol import (
    AUTOBAHN_STATE,
    SignalingFactory,
    SignalingProtocol,
    binary_frame,
)
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


def connect(protocol: Any) -> StringTransport:
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
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
        transport = connect(protocol)
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
        transport = connect(protocol)
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


class FramingTests(SynchronousTestCase):
    def test_binary_frame_matches_autobahn(self) -> None:
        """Our frames are byte for byte what Autobahn's sendMessage writes."""
        factory = WebSocketServerFactory()
        factory.protocol = WebSocketServerProtocol
        factory.setProtocolOptions(autoPingInterval=0)
        protocol = build(factory)
        transport = connect(protocol)
        for size in (0, 125, 126, 300, 65535, 65536, 70000):
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            transport.clear()
            protocol.sendMessage(payload, isBinary=True)
            self.assertEqual(binary_frame(payload), transport.value(), size)
