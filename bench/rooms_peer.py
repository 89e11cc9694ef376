"""The bench's lean ``/rooms/ws`` client (bench/rooms.py, rooms_reference.py)."""

from __future__ import annotations

import json
from typing import Any

from relay_links import server_frames


class RawPeer:
    """A lean ``/rooms/ws`` client for load: frames are built and parsed by hand.

    Client frames carry the all-zero masking key (RFC 6455 requires a mask,
    not a random one here), so no bytes are XORed; server frames are parsed
    with a few slices. Frames arrive at ``on_frame(bytes)``; the default keeps
    them for :meth:`next`.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.transport: Any = None
        self.peer_id = ""
        self._buffer = b""
        self._upgraded = False
        self.frames: list[dict[str, Any]] = []
        self._waiters: list[tuple[Any, Any]] = []
        self.on_frame = self._queue

    async def open(self, port: int) -> RawPeer:
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Protocol

        peer = self

        class _Wire(Protocol):
            def connectionMade(self) -> None:
                transport: Any = self.transport
                peer.transport = transport
                transport.setTcpNoDelay(True)
                transport.write(
                    b"GET /rooms/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )

            def dataReceived(self, data: bytes) -> None:
                peer._data(data)

        from twisted.internet.protocol import Factory

        await TCP4ClientEndpoint(self.reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(_Wire)
        )
        welcome = await self.next()
        self.peer_id = welcome["peer_id"]
        return self

    def _data(self, data: bytes) -> None:
        buf = self._buffer + data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buf
                return
            self._upgraded = True
            buf = buf[end + 4 :]
        frames, pos = server_frames(buf)
        for opcode, payload in frames:
            if opcode == 1:
                self.on_frame(payload)
        self._buffer = buf[pos:]

    def _queue(self, payload: bytes) -> None:
        frame = json.loads(payload)
        for i, (match, d) in enumerate(self._waiters):
            if match(frame):
                del self._waiters[i]
                d.callback(frame)
                return
        self.frames.append(frame)

    async def next(self, match: Any = lambda f: True) -> dict[str, Any]:
        from twisted.internet.defer import Deferred

        for i, frame in enumerate(self.frames):
            if match(frame):
                del self.frames[i]
                return frame
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiters.append((match, d))
        d.addTimeout(30, self.reactor)
        return await d

    def send_raw(self, data: bytes, binary: bool = False) -> None:
        n = len(data)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0xFF)) + n.to_bytes(8, "big")
        self.transport.write(head + b"\x00\x00\x00\x00" + data)

    def send(self, **msg: Any) -> None:
        self.send_raw(json.dumps(msg).encode())

    async def request(self, **msg: Any) -> dict[str, Any]:
        self._seq = getattr(self, "_seq", 0) + 1
        request_id = msg["request_id"] = f"q{self._seq}"
        self.send(**msg)
        return await self.next(lambda f: f.get("request_id") == request_id)

    async def of_type(self, kind: str) -> dict[str, Any]:
        return await self.next(lambda f: f.get("type") == kind)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()
