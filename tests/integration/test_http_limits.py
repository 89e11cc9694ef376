"""Slow clients, the per-IP cap and TCP_NODELAY on real loopback sockets."""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from actrix.root import ActrixService
from tests.certs import write_self_signed
from tests.daemon import add_realm, http_client, http_port, make_settings, start_daemon
from tests.signaling_client import SignalingClient

REALM = 1001


class Probe(Protocol):
    """A client connection that records what it receives and when it closes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def connect(test: TestCase, port: int) -> Probe:
    probe = Probe()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    connected = connectProtocol(endpoint, probe)
    connected.addTimeout(5, reactor)
    await connected
    test.addCleanup(lambda: _close(probe))
    return probe


def _close(probe: Probe) -> Deferred[None]:
    if not probe.closed.called:
        assert probe.transport is not None
        probe.transport.abortConnection()  # type: ignore[attr-defined]  # ITCPTransport
    return probe.closed


async def server_socket(client: Probe) -> socket.socket:
    """The daemon's accepted socket for ``client`` (found among reactor readers)."""
    assert client.transport is not None
    local_port = client.transport.getHost().port  # type: ignore[attr-defined]  # IPv4Address
    for _ in range(100):
        for reader in reactor.getReaders():
            if not isinstance(reader, tcp.Server):
                continue
            if reader.getPeer().port == local_port:
                sock: socket.socket = reader.getHandle()
                return sock
        await sleep(0.01)
    raise AssertionError(f"no accepted socket for client port {local_port}")


def nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class NoDelayTests(TestCase):
    """TCP_NODELAY is on for the accepted socket of every TCP listener."""

    timeout = 20

    async def _assert_nodelay(self, root: ActrixService, name: str) -> None:
        client = await connect(self, root.listener(name).bound_port)
        self.assertEqual(nodelay(await server_socket(client)), 1, name)

    async def test_http_and_ice_tcp_and_tls(self) -> None:
        """The HTTP site, TURN over TCP and TURN over TLS all accept without Nagle."""
        tmp = Path(self.mktemp())
        cert, key = write_self_signed(tmp / "tls")
        overrides = f"[bind.ice]\ntls_port = 0\ncert = '{cert}'\nkey = '{key}'\n"
        root = start_daemon(self, make_settings(tmp / "db", overrides=overrides))
        for name in ("http", "ice-tcp", "ice-tls"):
            await self._assert_nodelay(root, name)

    async def test_https_site(self) -> None:
        """The HTTPS site (and so WSS) accepts without Nagle."""
        tmp = Path(self.mktemp())
        cert, key = write_self_signed(tmp / "tls")
        overrides = (
            'env = "test"\n[bind.https]\ndomain_name = "localhost"\n'
            'advertised_ip = "127.0.0.1"\nip = "127.0.0.1"\nport = 0\n'
            f"cert = '{cert}'\nkey = '{key}'\n"
        )
        root = start_daemon(self, make_settings(tmp / "db", overrides=overrides))
        self.assertIsNotNone(root.listener("http").tls)
        await self._assert_nodelay(root, "http")


class SlowClientTests(TestCase):
    """Half-sent requests from one address cannot pin the daemon's sockets."""

    timeout = 30

    async def test_half_sent_requests_are_capped_and_timed_out(self) -> None:
        """Of 1 000 half-sent requests from one IP, 50 are held, then all get 408."""
        overrides = (
            "[bind.http]\nrequest_timeout = 1\nidle_timeout = 5\n"
            "max_connections_per_ip = 50\n"
        )
        root = start_daemon(
            self, make_settings(Path(self.mktemp()), enable=16, overrides=overrides)
        )
        port = http_port(root)
        probes = [await connect(self, port) for _ in range(1000)]
        for probe in probes:
            assert probe.transport is not None
            probe.transport.write(b"GET /ks/health HTTP/1.1\r\nHost: x\r\n")
        await sleep(0.3)
        listener = root.listener("http")
        self.assertEqual(listener.per_ip.open_count("127.0.0.1"), 50)
        open_ones = [p for p in probes if not p.closed.called]
        self.assertEqual(len(open_ones), 50)
        closed = Deferred.fromCoroutine(_all_closed(open_ones))
        closed.addTimeout(5, reactor)
        await closed
        for probe in open_ones:
            self.assertTrue(probe.received.startswith(b"HTTP/1.1 408 "))
        self.assertEqual(listener.per_ip.open_count("127.0.0.1"), 0)
        response = await http_client(self).get(f"http://127.0.0.1:{port}/ks/health")
        self.assertEqual(response.code, 200)
        await response.content()


async def _all_closed(probes: list[Probe]) -> None:
    for probe in probes:
        await probe.closed


class WebSocketTimeoutTests(TestCase):
    """The site's timeouts stop at the WebSocket upgrade."""

    timeout = 30

    async def test_websocket_outlives_request_and_idle_timeouts(self) -> None:
        """A registered signaling session stays up well past both HTTP timeouts."""
        directory = Path(self.mktemp())
        add_realm(directory, REALM)
        overrides = (
            "[bind.http]\nrequest_timeout = 1\nidle_timeout = 1\n"
            "max_connections_per_ip = 100\n"
        )
        root = start_daemon(
            self, make_settings(directory, enable=25, overrides=overrides)
        )
        client = await SignalingClient.connect(reactor, http_port(root))
        self.addCleanup(client.drop)
        registered = await client.register(REALM, name="echo")
        self.assertTrue(registered.HasField("success"), str(registered))
        await sleep(3.0)
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"), str(pong))
        self.assertEqual(root.listener("http").per_ip.open_count("127.0.0.1"), 1)
