"""PROXY protocol v2: the bounded parser and the listener wrapper."""

from __future__ import annotations

import contextlib
import struct
from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.logthrottle import LogThrottle
from actrix.core.proxyproto import (
    MAX_ADDRESS_BLOCK,
    SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderFactory,
    ProxyPolicy,
    encode_v2,
    parse_v2,
)
from tests.unit.turn.test_service import _capture_events


def _header(version_command: int, family_protocol: int, block: bytes) -> bytes:
    return (
        SIGNATURE
        + struct.pack("!BBH", version_command, family_protocol, len(block))
        + block
    )


class ParseTests(SynchronousTestCase):
    def test_ipv4_and_ipv6_sources(self) -> None:
        """A PROXY header yields its size and the source address."""
        v4 = encode_v2(("198.51.100.7", 4242), ("10.0.0.1", 3478))
        self.assertEqual(parse_v2(v4 + b"rest"), (len(v4), ("198.51.100.7", 4242)))
        v6 = encode_v2(("2001:db8::7", 1), ("2001:db8::1", 3478))
        self.assertEqual(parse_v2(v6), (len(v6), ("2001:db8::7", 1)))

    def test_local_and_unspec_keep_the_connection_address(self) -> None:
        """LOCAL and AF_UNSPEC headers carry no client address."""
        local = encode_v2(None)
        self.assertEqual(parse_v2(local), (16, None))
        unspec = _header(0x21, 0x00, b"")
        self.assertEqual(parse_v2(unspec), (16, None))

    def test_tlvs_are_skipped(self) -> None:
        """Bytes after the addresses (TLVs) are part of the header and ignored."""
        block = struct.pack("!4s4sHH", bytes([192, 0, 2, 1]), bytes(4), 5, 6)
        header = _header(0x21, 0x11, block + b"\x04\x00\x01x")
        self.assertEqual(parse_v2(header + b"Z"), (len(header), ("192.0.2.1", 5)))

    def test_incomplete_needs_more(self) -> None:
        """Every proper prefix of a header asks for more bytes."""
        header = encode_v2(("198.51.100.7", 4242))
        for n in range(len(header)):
            self.assertIsNone(parse_v2(header[:n]))

    def test_bad_headers(self) -> None:
        """Each malformed header is refused with its reason."""
        v4 = struct.pack("!4s4sHH", bytes(4), bytes(4), 1, 2)
        cases = {
            b"\x00\x01\x00\x00" + bytes(16): "not_proxy_v2",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n": "not_proxy_v2",
            _header(0x11, 0x11, v4): "version",
            _header(0x22, 0x11, v4): "command",
            _header(0x21, 0x12, v4): "not_stream",
            _header(0x21, 0x11, v4[:8]): "short_address",
            _header(0x21, 0x21, v4): "short_address",
            _header(0x21, 0x31, bytes(216)): "family",
            SIGNATURE
            + struct.pack("!BBH", 0x21, 0x11, MAX_ADDRESS_BLOCK + 1): "too_long",
        }
        for data, reason in cases.items():
            with self.assertRaises(ProxyHeaderError) as cm:
                parse_v2(data)
            self.assertEqual(cm.exception.reason, reason, data)

    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_raise_header_error(self, data: bytes) -> None:
        """Arbitrary input returns None/a result or raises ProxyHeaderError only."""
        for candidate in (data, SIGNATURE + data):
            with contextlib.suppress(ProxyHeaderError):
                parse_v2(candidate)


class _Inner(Protocol):
    def __init__(self) -> None:
        self.peers: list[Any] = []
        self.data = b""
        self.lost: list[Failure] = []

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.peers.append(transport.getPeer())

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost.append(reason)


class _Counters:
    def __init__(self) -> None:
        self.proxy_headers: Counter[str] = Counter()


class WrapperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.counters = _Counters()
        self.policy = ProxyPolicy(
            ["10.0.0.0/8"], self.counters, self.clock, LogThrottle(self.clock)
        )
        self.inner = _Inner()
        factory = Factory.forProtocol(lambda: self.inner)
        self.factory = ProxyHeaderFactory(factory, self.policy, "ice-tcp")

    def connect(self, host: str) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_trusted_header_then_data(self) -> None:
        """The inner protocol connects after the header, seeing the real client."""
        protocol, transport = self.connect("10.1.2.3")
        self.assertEqual(self.inner.peers, [])
        header = encode_v2(("198.51.100.7", 4242))
        protocol.dataReceived(header[:5])
        protocol.dataReceived(header[5:20])
        self.assertEqual(self.inner.peers, [])
        protocol.dataReceived(header[20:] + b"STUN")
        self.assertEqual(
            (self.inner.peers[0].host, self.inner.peers[0].port), ("198.51.100.7", 4242)
        )
        self.assertEqual(self.inner.data, b"STUN")
        protocol.dataReceived(b"more")
        self.assertEqual(self.inner.data, b"STUNmore")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.counters.proxy_headers["accepted"], 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_trusted_local_keeps_balancer_address(self) -> None:
        """A LOCAL header (health check) keeps the balancer's own address."""
        protocol, _ = self.connect("10.1.2.3")
        protocol.dataReceived(encode_v2(None))
        self.assertEqual(self.inner.peers[0].host, "10.1.2.3")
        self.assertEqual(self.counters.proxy_headers["local"], 1)

    def test_trusted_without_header_is_closed(self) -> None:
        """A trusted source that sends STUN instead of a header is cut off."""
        protocol, transport = self.connect("10.1.2.3")
        protocol.dataReceived(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12))
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.counters.proxy_headers["not_proxy_v2"], 1)
        protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.inner.lost, [])  # never connected, never told

    def test_header_timeout(self) -> None:
        """A trusted source must finish its header within the timeout."""
        protocol, transport = self.connect("10.1.2.3")
        protocol.dataReceived(SIGNATURE[:6])
        self.clock.advance(5)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.counters.proxy_headers["timeout"], 1)

    def test_untrusted_header_closes_and_logs_once(self) -> None:
        """A PROXY header (v2 or v1) from an untrusted source closes the connection."""
        events = _capture_events(self)
        for data in (encode_v2(("1.2.3.4", 5)), b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"):
            self.inner = _Inner()
            protocol, transport = self.connect("192.0.2.50")
            self.assertEqual(self.inner.peers[0].host, "192.0.2.50")
            protocol.dataReceived(data)
            self.assertTrue(transport.disconnected)
            self.assertEqual(self.inner.data, b"")
        self.assertEqual(self.counters.proxy_headers["untrusted_source"], 2)
        lines = [e for e in events if e.get("reason") == "untrusted_source"]
        self.assertEqual(len(lines), 1)

    def test_untrusted_plain_traffic_passes(self) -> None:
        """Direct clients (untrusted, no header) are served as before."""
        protocol, transport = self.connect("192.0.2.50")
        protocol.dataReceived(b"\x00\x01rest")
        protocol.dataReceived(SIGNATURE)  # only the first bytes are checked
        self.assertEqual(self.inner.data, b"\x00\x01rest" + SIGNATURE)
        self.assertFalse(transport.disconnected)

    def test_mapped_ipv4_trusted(self) -> None:
        """An IPv4-mapped IPv6 balancer address matches an IPv4 network."""
        self.assertTrue(self.policy.trusts("::ffff:10.0.0.9"))
        self.assertFalse(self.policy.trusts("not-an-ip"))
