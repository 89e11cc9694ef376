"""``write_now``: frames to TCP clients sent at once, in order (a real socket)."""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from actrix.core.turnwrite import write_now

CHUNK = 65536
CHUNKS = 256  # 16 MB: more than the kernel buffers of a client that does not read


class _Server(Protocol):
    def __init__(self, connected: Deferred[_Server]) -> None:
        self._connected = connected

    def connectionMade(self) -> None:
        self._connected.callback(self)


class WriteNowTests(TestCase):
    timeout = 60

    async def test_direct_and_queued_writes_keep_the_byte_order(self) -> None:
        """Sent directly while the buffer is empty, queued once the client lags.

        The client does not read at first, so the kernel buffers fill, sends
        go partial, and the rest is queued in Twisted; every byte still
        arrives, in order.
        """
        connected: Deferred[_Server] = Deferred()
        factory: Any = Factory.forProtocol(lambda: _Server(connected))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        client = socket.create_connection(("127.0.0.1", address.port))
        self.addCleanup(client.close)
        server = await connected
        transport: Any = server.transport
        self.addCleanup(transport.abortConnection)
        chunks = [bytes([i]) * CHUNK for i in range(CHUNKS)]
        expected = hashlib.sha256(b"".join(chunks)).hexdigest()

        def read_all() -> str:
            # Slower than the writer: the kernel buffers fill and drain while
            # Twisted holds the overflow, so a frame sent past the queue shows.
            digest = hashlib.sha256()
            remaining = CHUNK * CHUNKS
            client.settimeout(10)
            while remaining:
                data = client.recv(min(remaining, 32768))
                if not data:
                    break
                digest.update(data)
                remaining -= len(data)
                time.sleep(0.0005)
            return digest.hexdigest()

        reading = deferToThread(read_all)
        direct = queued = 0
        for n, chunk in enumerate(chunks):
            queued_before = transport._tempDataLen
            write_now(transport, chunk)
            if not queued_before and transport._tempDataLen == 0:
                direct += 1
            queued = max(queued, transport._tempDataLen)
            if n % 4 == 3:
                await deferLater(reactor, 0)  # Twisted writes some of its queue
        self.assertGreater(direct, 0)  # sent at once while nothing was queued
        self.assertGreater(queued, 0)  # and queued behind a lagging client
        self.assertEqual(await reading, expected)
        # Once drained, the next frame goes straight out again.
        for _ in range(50):
            if not transport._tempDataLen and transport.offset == len(
                transport.dataBuffer
            ):
                break
            await deferLater(reactor, 0.05)
        write_now(transport, b"after")
        self.assertEqual(transport._tempDataLen, 0)
        client.settimeout(5)
        self.assertEqual(client.recv(5), b"after")
