"""The Autobahn client protocol the test clients (signaling, rooms) share."""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.protocol import connectionDone


class ClientClosed(Exception):
    """The WebSocket closed (or never opened); ``code`` and ``reason`` say why."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed: {code} {reason}")
        self.code = code
        self.reason = reason or ""


class FrameSink(Protocol):
    """What a test client offers its protocol."""

    def _opened(self, protocol: ClientProtocol) -> None: ...

    def _received(self, payload: bytes, is_binary: bool) -> None: ...

    def _closed(self, code: int | None, reason: str) -> None: ...


class ClientProtocol(WebSocketClientProtocol):
    """Hands opens, frames and closes to its ``client``."""

    client: FrameSink

    def onOpen(self) -> None:
        self.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.client._received(payload, isBinary)

    def connectionLost(self, reason: Any = connectionDone) -> None:
        super().connectionLost(reason)
        # Autobahn leaves this timer behind when the peer vanishes mid-close.
        call: Any = self.closeHandshakeTimeoutCall
        if call is not None:
            self.closeHandshakeTimeoutCall = None
            call.cancel()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.client._closed(code, reason or self.wasNotCleanReason or "")
