"""A small room client for tests and the benchmark: Autobahn, both room wires.

It queues every frame it receives and lets a caller await the next one that
matches a predicate. :class:`JsonPeer` and :class:`BinaryPeer` add the framing of
``/rooms/ws`` and ``/rooms/bin``; neither knows the server's internals.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint

from actrix.rooms import binary_codec as bc
from tests.wsclient import ClientClosed, ClientProtocol

TIMEOUT = 5.0


class RoomClient:
    """One WebSocket; frames are decoded by :meth:`decode` and queued."""

    path = "/rooms/ws"

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.protocol: ClientProtocol | None = None
        self.frames: list[Any] = []
        self.close_code: int | None = None
        self.closed = False
        self._open: Deferred[None] = Deferred()
        self._waiters: list[tuple[Callable[[Any], bool], Deferred[Any]]] = []
        self._close_waiters: list[Deferred[int | None]] = []

    async def connect(self, port: int, host: str = "127.0.0.1") -> None:
        factory = WebSocketClientFactory(
            f"ws://{host}:{port}{self.path}", reactor=self.reactor
        )
        factory.protocol = ClientProtocol
        factory.setProtocolOptions(
            autoPingInterval=0, openHandshakeTimeout=TIMEOUT, maxMessagePayloadSize=0
        )
        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=TIMEOUT)
        protocol = await endpoint.connect(factory)
        assert isinstance(protocol, ClientProtocol)
        protocol.client = self
        self._open.addTimeout(TIMEOUT, self.reactor)
        await self._open

    def decode(self, payload: bytes, is_binary: bool) -> Any:
        return payload

    def _opened(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        if not self._open.called:
            self._open.callback(None)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        frame = self.decode(payload, is_binary)
        for i, (match, d) in enumerate(self._waiters):
            if match(frame):
                del self._waiters[i]
                d.callback(frame)
                return
        self.frames.append(frame)

    def _closed(self, code: int | None, reason: str) -> None:
        self.closed = True
        self.close_code = code
        error = ClientClosed(code, reason)
        if not self._open.called:
            self._open.errback(error)
        for _, d in self._waiters:
            d.errback(error)
        self._waiters.clear()
        for w in self._close_waiters:
            w.callback(code)
        self._close_waiters.clear()

    async def next(
        self, match: Callable[[Any], bool] = lambda f: True, timeout: float = TIMEOUT
    ) -> Any:
        """The first queued or future frame ``match`` accepts."""
        for i, frame in enumerate(self.frames):
            if match(frame):
                del self.frames[i]
                return frame
        if self.closed:
            raise ClientClosed(self.close_code, "")
        d: Deferred[Any] = Deferred()
        self._waiters.append((match, d))
        d.addTimeout(timeout, self.reactor)
        return await d

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        if self.closed:
            return self.close_code
        d: Deferred[int | None] = Deferred()
        self._close_waiters.append(d)
        d.addTimeout(timeout, self.reactor)
        return await d

    def send_raw(self, data: bytes, binary: bool) -> None:
        assert self.protocol is not None
        self.protocol.sendMessage(data, isBinary=binary)

    def close(self) -> None:
        if self.protocol is not None and not self.closed:
            self.protocol.sendClose(1000)

    def abort(self) -> None:
        transport: Any = self.protocol.transport if self.protocol else None
        if transport is not None:
            transport.abortConnection()


class JsonPeer(RoomClient):
    """A ``/rooms/ws`` client: JSON text frames; ``peer_id`` from the welcome ACK."""

    path = "/rooms/ws"
    peer_id = ""

    def decode(self, payload: bytes, is_binary: bool) -> Any:
        return json.loads(payload)

    async def open(self, port: int) -> JsonPeer:
        await self.connect(port)
        welcome = await self.next()
        assert welcome["type"] == "ACK", welcome
        self.peer_id = welcome["peer_id"]
        return self

    def send(self, **msg: Any) -> None:
        self.send_raw(json.dumps(msg).encode(), False)

    async def request(self, **msg: Any) -> dict[str, Any]:
        """Send with a fresh request_id and await the reply carrying it."""
        request_id = msg.setdefault("request_id", uuid.uuid4().hex[:8])
        self.send(**msg)
        reply: dict[str, Any] = await self.next(
            lambda f: f.get("request_id") == request_id
        )
        return reply

    async def of_type(self, kind: str) -> dict[str, Any]:
        frame: dict[str, Any] = await self.next(lambda f: f.get("type") == kind)
        return frame


class BinaryPeer(RoomClient):
    """A ``/rooms/bin`` client: frames as ``(type, uuid, payload_type, obj)``."""

    path = "/rooms/bin"

    def decode(self, payload: bytes, is_binary: bool) -> Any:
        header = bc.decode_header(payload)
        body = payload[bc.HEADER_LEN :]
        if header.payload_type == bc.PAYLOAD_PROTOBUF:
            from google.protobuf import struct_pb2

            obj = bc._from_struct(struct_pb2.Struct.FromString(body), 0)
        else:
            obj = json.loads(body)
        return (header.msg_type, header.uuid, header.payload_type, obj)

    def send_frame(
        self,
        msg_type: int,
        fields: dict[str, Any],
        payload_type: int = bc.PAYLOAD_JSON,
        message_uuid: bytes | None = None,
    ) -> bytes:
        message_uuid = message_uuid or uuid.uuid4().bytes
        self.send_raw(bc.encode(msg_type, message_uuid, payload_type, fields), True)
        return message_uuid

    async def reply(
        self, msg_type: int, fields: dict[str, Any], payload_type: int = bc.PAYLOAD_JSON
    ) -> tuple[int, bytes, int, dict[str, Any]]:
        """Send and await the frame carrying the same UUID."""
        sent = self.send_frame(msg_type, fields, payload_type)
        frame: tuple[int, bytes, int, dict[str, Any]] = await self.next(
            lambda f: f[1] == sent
        )
        return frame

    async def of_type(self, msg_type: int) -> tuple[int, bytes, int, dict[str, Any]]:
        frame: tuple[int, bytes, int, dict[str, Any]] = await self.next(
            lambda f: f[0] == msg_type
        )
        return frame

    async def connect_as(
        self,
        port: int,
        client_id: str,
        token: str = "test_token_1",  # noqa: S107 (SM test token)
        **extra: Any,
    ) -> dict[str, Any]:
        await self.connect(port)
        frame = await self.reply(
            bc.CONNECT, {"client_id": client_id, "auth_token": token, **extra}
        )
        fields: dict[str, Any] = frame[3]
        return fields
