"""PROXY protocol v2 on the real TURN TCP and TLS listeners (loopback).

The test client plays the load balancer: it connects from 127.0.0.1, sends
a v2 header naming another client, then speaks STUN (in clear, or TLS after
the header). XOR-MAPPED-ADDRESS must be the client the header named; a
header from an untrusted source must get the connection closed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from actrix.core.config import ENABLE_STUN, ENABLE_TURN
from actrix.core.proxyproto import encode_v2
from actrix.root import ActrixService
from actrix.stun import codec
from tests.certs import write_self_signed
from tests.daemon import make_settings, start_daemon

CLIENT = ("198.51.100.7", 4242)


class _Balancer(Protocol):
    """Sends a PROXY header and one Binding request; keeps what comes back."""

    def __init__(self, header: bytes, tls: bool) -> None:
        self.header = header
        self.tls = tls
        self.txid = os.urandom(12)
        self.received = b""
        self.answer: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(self.header)
        if self.tls:
            transport.startTLS(ssl.CertificateOptions(verify=False))
        transport.write(codec.encode(codec.BINDING_REQUEST, self.txid, []))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= 20 and not self.answer.called:
            self.answer.callback(self.received)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class ProxyListenerTests(TestCase):
    timeout = 30

    def _daemon(self, trusted: str) -> ActrixService:
        directory = Path(self.mktemp())
        directory.mkdir()
        cert, key = write_self_signed(directory / "tls")
        settings = make_settings(
            directory,
            enable=ENABLE_STUN | ENABLE_TURN,
            overrides=(
                f'[bind.ice]\ntls_port = 0\ncert = "{cert}"\nkey = "{key}"\n'
                "tcp_proxy_protocol = true\ntls_proxy_protocol = true\n"
                f'proxy_trusted = ["{trusted}"]\n'
            ),
        )
        return start_daemon(self, settings)

    async def _connect(
        self, root: ActrixService, listener: str, header: bytes
    ) -> _Balancer:
        port = int(root.listener(listener).bound_port)
        balancer = _Balancer(header, tls=listener == "ice-tls")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, balancer)
        self.addCleanup(_close, balancer)
        return balancer

    async def _mapped(self, root: ActrixService, listener: str) -> tuple[str, int]:
        balancer = await self._connect(root, listener, encode_v2(CLIENT))
        balancer.answer.addTimeout(5, reactor)
        reply = codec.decode(await balancer.answer)
        return codec.decode_xor_address(
            reply.attrs[codec.XOR_MAPPED_ADDRESS], balancer.txid
        )

    async def test_tcp_and_tls_map_the_proxied_client(self) -> None:
        """Behind a trusted balancer, Binding answers with the header's client."""
        root = self._daemon("127.0.0.0/8")
        self.assertEqual(await self._mapped(root, "ice-tcp"), CLIENT)
        self.assertEqual(await self._mapped(root, "ice-tls"), CLIENT)
        turn: Any = root.sessions.getServiceNamed("turn")
        self.assertEqual(turn.metrics.proxy_headers["accepted"], 2)

    async def test_untrusted_header_is_closed(self) -> None:
        """A header from outside proxy_trusted gets the connection closed."""
        root = self._daemon("10.0.0.0/8")
        balancer = await self._connect(root, "ice-tcp", encode_v2(CLIENT))
        balancer.closed.addTimeout(5, reactor)
        await balancer.closed
        self.assertFalse(balancer.answer.called)
        turn: Any = root.sessions.getServiceNamed("turn")
        self.assertEqual(turn.metrics.proxy_headers["untrusted_source"], 1)


def _close(balancer: _Balancer) -> Deferred[None]:
    transport: Any = balancer.transport
    if transport is not None and not balancer.closed.called:
        transport.abortConnection()
    return balancer.closed
