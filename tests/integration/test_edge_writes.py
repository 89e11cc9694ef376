"""The edge's turn writer on real loopback sockets.

A server :class:`~actrix.core.websocket.EdgeProtocol` runs a scripted action
when a client message arrives; a raw TCP client sends the upgrade and one
masked frame, and reads the server's (unmasked) frames. The server socket's
``writeSomeData`` (one ``send``) and ``startWriting`` (registration with the
poller) are counted to see how the bytes left.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from actrix.core.turnwrite import TURN_BYTES
from actrix.core.websocket import EdgeProtocol, edge_options
from tests.spies import count_socket_writes

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)

Action = Callable[[Any, dict[str, int]], None]


class Scripted(EdgeProtocol):
    __slots__ = ()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        calls = count_socket_writes(self.transport)
        self.factory.calls = calls
        self.factory.action(self, calls)


class RawClient(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(UPGRADE)

    def dataReceived(self, data: bytes) -> None:
        opened = b"\r\n\r\n" in self.data
        self.data += data
        if not opened and b"\r\n\r\n" in self.data:
            # Once the answer to the upgrade is out: an empty binary frame.
            transport: Any = self.transport
            transport.write(b"\x82\x80\0\0\0\0")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)

    def frames(self) -> list[tuple[int, bytes]]:
        """(opcode, payload) of each whole server frame after the handshake."""
        data = self.data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""
        found = []
        while len(data) >= 2:
            size, at = data[1] & 0x7F, 2
            if size == 126:
                (size,), at = struct.unpack("!H", data[2:4]), 4
            elif size == 127:
                (size,), at = struct.unpack("!Q", data[2:10]), 10
            if len(data) < at + size:
                break
            found.append((data[0] & 0x0F, data[at : at + size]))
            data = data[at + size :]
        return found


class TurnWriterTests(TestCase):
    async def _serve(self, action: Action, frames: int) -> tuple[RawClient, Any]:
        factory: Any = WebSocketServerFactory()
        factory.protocol = Scripted
        edge_options(factory, 1 << 20)
        factory.action = action
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        client = RawClient()
        await connectProtocol(endpoint, client)
        self.addCleanup(self._close, client)
        for _ in range(500):
            if len(client.frames()) >= frames or client.closed.called:
                break
            await deferLater(reactor, 0.01, lambda: None)
        return client, factory

    async def _close(self, client: RawClient) -> None:
        if not client.closed.called:
            transport: Any = client.transport
            transport.abortConnection()
            await client.closed

    async def test_a_turns_writes_leave_in_one_send(self) -> None:
        """Fifty messages written in one turn leave in one send, in order,
        without registering the socket with the poller."""

        def burst(protocol: Any, calls: dict[str, int]) -> None:
            for i in range(50):
                protocol.send_bytes(b"m%d" % i)

        client, factory = await self._serve(burst, 50)
        self.assertEqual(client.frames(), [(2, b"m%d" % i) for i in range(50)])
        self.assertEqual(factory.calls, {"send": 1, "poll": 0})

    async def test_order_kept_behind_buffered_bytes(self) -> None:
        """Bytes already in the transport's buffer go first."""

        def buffered_first(protocol: Any, calls: dict[str, int]) -> None:
            protocol.transport.write(b"\x82\x01A")
            protocol.send_bytes(b"B")

        client, _ = await self._serve(buffered_first, 2)
        self.assertEqual(client.frames(), [(2, b"A"), (2, b"B")])

    async def test_clean_drop_sends_pending_first(self) -> None:
        """A clean close sends what the turn holds before its FIN."""

        def last_words(protocol: Any, calls: dict[str, int]) -> None:
            protocol.send_bytes(b"last")
            protocol.dropConnection(abort=False)

        client, factory = await self._serve(last_words, 1)
        await client.closed
        self.assertEqual(client.frames(), [(2, b"last")])
        self.assertEqual(factory.turn_writer._pending, {})

    async def test_abort_discards_pending(self) -> None:
        """An aborted connection's pending bytes are dropped with it."""

        def abort(protocol: Any, calls: dict[str, int]) -> None:
            protocol.send_bytes(b"never")
            protocol.dropConnection(abort=True)

        client, factory = await self._serve(abort, 1)
        await client.closed
        self.assertEqual(client.frames(), [])
        self.assertEqual(factory.turn_writer._pending, {})

    async def test_close_frame_follows_pending_messages(self) -> None:
        """close_session's frame leaves after the messages sent before it."""

        def close(protocol: Any, calls: dict[str, int]) -> None:
            protocol.send_bytes(b"bye")
            protocol.close_session(4001, "done")

        client, _ = await self._serve(close, 2)
        frames = client.frames()
        self.assertEqual(frames[0], (2, b"bye"))
        self.assertEqual(frames[1][0], 8)
        self.assertEqual(frames[1][1][:2], struct.pack("!H", 4001))

    async def test_large_pending_is_written_at_once(self) -> None:
        """Past TURN_BYTES pending, a connection is written within the turn."""
        seen: list[int] = []
        chunk = b"z" * (TURN_BYTES // 2)

        def big(protocol: Any, calls: dict[str, int]) -> None:
            for _ in range(3):
                protocol.send_bytes(chunk)
            seen.append(calls["send"])

        client, _ = await self._serve(big, 3)
        self.assertEqual(seen, [1])
        self.assertEqual(client.frames(), [(2, chunk)] * 3)

    async def test_flush_now_writes_within_the_turn(self) -> None:
        seen: list[int] = []

        def flush(protocol: Any, calls: dict[str, int]) -> None:
            protocol.send_bytes(b"now")
            protocol.flush_now()
            seen.append(calls["send"])

        client, _ = await self._serve(flush, 1)
        self.assertEqual(seen, [1])
        self.assertEqual(client.frames(), [(2, b"now")])


class FlushFailureTests(TestCase):
    def test_one_failing_connection_does_not_hold_back_the_others(self) -> None:
        """A write_out that raises is logged; the turn's other writes go out."""
        from twisted.internet.task import Clock

        from actrix.core.turnwrite import TurnWriter

        written: list[tuple[str, list[bytes]]] = []

        class Sink:
            def __init__(self, name: str, broken: bool = False) -> None:
                self.name, self.broken = name, broken

            def write_out(self, parts: list[bytes]) -> None:
                if self.broken:
                    raise RuntimeError("broken transport")
                written.append((self.name, parts))

        clock = Clock()
        writer = TurnWriter(clock)
        first, broken, last = Sink("a"), Sink("b", broken=True), Sink("c")
        for sink in (first, broken, last):
            writer.add(sink, b"x")
        writer.add(first, b"y")
        clock.advance(0)
        self.assertEqual(written, [("a", [b"x", b"y"]), ("c", [b"x"])])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
