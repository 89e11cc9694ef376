"""The WebSocket edge every WS endpoint shares (Autobahn on Twisted).

:class:`EdgeProtocol` is what ``/signaling/ws``, ``/rooms/ws`` and ``/rooms/bin``
have in common below their codecs: TCP_NODELAY (Autobahn's own attempt fails
silently on Twisted), send backpressure (a peer that stops reading is dropped
once its unsent backlog passes a bound), direct delivery of complete messages
(no per-message Deferred), close frames with any code, and cleanup of
Autobahn's close-handshake timer. :class:`EdgeLimits` holds the connection caps
checked before the upgrade; :class:`TokenBucket` and :class:`MessageRate` the
per-connection message limits. :class:`UpgradeOnly` answers 426 to plain GETs.
Autobahn owns ``.log``, so this module logs through ``_log``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

_log = Logger()

# Bytes a peer may leave unread once the transport's own buffer is full.
SEND_BACKLOG_LIMIT: Final = 4 * 1024 * 1024

CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now``."""
        return self._tokens + max(0.0, now - self._last) * self._rate >= self._burst


class MessageRate:
    """A per-connection token bucket that counts drops (rooms.md §7).

    :meth:`take` answers ``"ok"``, ``"drop"`` (drop silently), ``"notify"`` (drop
    and tell the client; at most once a second) or ``"close"`` (more than
    ``max_drops`` drops within ``window`` seconds).
    """

    __slots__ = (
        "_bucket",
        "_drops",
        "_max_drops",
        "_notified",
        "_window",
        "_window_start",
    )

    def __init__(
        self,
        rate: float,
        burst: float,
        now: float,
        max_drops: int = 1000,
        window: float = 60.0,
    ) -> None:
        self._bucket = TokenBucket(rate, burst, now)
        self._drops = 0
        self._window_start = now
        self._notified = -1.0
        self._max_drops = max_drops
        self._window = window

    def take(self, now: float) -> str:
        if self._bucket.take(now):
            return "ok"
        if now - self._window_start >= self._window:
            self._window_start = now
            self._drops = 0
        self._drops += 1
        if self._drops > self._max_drops:
            return "close"
        if now - self._notified >= 1.0:
            self._notified = now
            return "notify"
        return "drop"


class EdgeLimits:
    """Live connections: a total cap (503) and a per-IP cap (429)."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self._max_total = max_total
        self._max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> int | None:
        """Count a connection; the HTTP status to refuse it with, if over a cap."""
        if self.total >= self._max_total:
            return 503
        open_now = self._per_ip.get(ip, 0)
        if open_now >= self._max_per_ip:
            return 429
        self._per_ip[ip] = open_now + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        open_now = self._per_ip.get(ip, 0)
        if open_now <= 1:
            self._per_ip.pop(ip, None)
        else:
            self._per_ip[ip] = open_now - 1
        self.total = max(0, self.total - 1)


@implementer(IPushProducer)
class SendPressure:
    """Told by the transport when its write buffer fills up and drains.

    ``unsent`` counts the bytes written while the buffer was full.
    """

    __slots__ = ("full", "unsent")

    def __init__(self) -> None:
        self.full = False
        self.unsent = 0

    def pauseProducing(self) -> None:
        self.full = True

    def resumeProducing(self) -> None:
        self.full = False
        self.unsent = 0

    def stopProducing(self) -> None:
        self.full = False


class EdgeProtocol(WebSocketServerProtocol):
    """One server WebSocket with the shared edge behaviour.

    Subclasses implement ``onMessage`` (called directly, once per complete
    message) and may override :meth:`edge_closed`, :meth:`edge_slow_reader`.
    ``send_backlog_limit`` is read from the factory when it has one.
    """

    _pressure: SendPressure
    _ip: str = ""
    last_inbound: float = 0.0

    def connectionMade(self) -> None:
        super().connectionMade()
        transport: Any = self.transport
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        # Twisted Web's HTTPChannel registered itself as the socket's producer
        # and no longer owns the socket after the upgrade; take its place to
        # learn when the peer stops reading.
        self._pressure = SendPressure()
        with contextlib.suppress(RuntimeError):  # nothing was registered
            self.unregisterProducer()
        self.registerProducer(self._pressure, True)
        peer = transport.getPeer()
        self._ip = str(getattr(peer, "host", ""))

    def onMessageEnd(self) -> None:
        # Autobahn's version also fires a "message" observer event through a
        # Deferred per message; nothing observes it here, so deliver directly.
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            self.onMessage(payload, self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]  # as Autobahn does

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            # Autobahn leaves this timer behind when the peer vanishes mid-close.
            call: Any = self.closeHandshakeTimeoutCall
            if call is not None:
                self.closeHandshakeTimeoutCall = None
                call.cancel()
            self.edge_closed()

    def edge_closed(self) -> None:
        """The connection is gone (called once, from ``connectionLost``)."""

    def edge_slow_reader(self, unsent: int) -> None:
        """The peer left ``unsent`` bytes unread past the bound; it is dropped."""
        _log.warn(
            "{ip} left {size} bytes unread; dropping its connection",
            ip=self._ip,
            size=unsent,
        )

    def send_frame(self, data: bytes, binary: bool) -> bool:
        """Send one message unless closing or the peer stopped reading."""
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return False
        pressure = self._pressure
        if pressure.full:
            pressure.unsent += len(data)
            limit = getattr(self.factory, "send_backlog_limit", SEND_BACKLOG_LIMIT)
            if pressure.unsent > limit:
                self.edge_slow_reader(pressure.unsent)
                self.dropConnection(abort=True)
                return False
        self.sendMessage(data, isBinary=binary)
        return True

    def close_session(self, code: int, reason: str) -> None:
        """Close with ``code`` (any, including 1001/1007/4xxx), or abort if closing."""
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            # sendClose refuses protocol codes such as 1001 and 1007; the frame
            # method underneath takes any code.
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)
        elif self.state != WebSocketServerProtocol.STATE_CLOSED:
            self.dropConnection(abort=True)

    def abort(self) -> None:
        self.dropConnection(abort=True)


def edge_options(factory: WebSocketServerFactory, max_message_size: int) -> None:
    """The Autobahn options every endpoint uses (frame cap → close 1009)."""
    factory.setProtocolOptions(
        maxFramePayloadSize=max_message_size,
        maxMessagePayloadSize=max_message_size,
        autoPingInterval=0,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=2,
        # Send a close frame (1009, 1002...) before dropping, so the peer
        # learns why.
        failByDrop=False,
        perMessageCompressionAccept=lambda offers: None,
    )


class UpgradeOnly(WebSocketResource):
    """A WebSocket path: a GET without ``Upgrade`` gets 426 ``text/plain``."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        upgrade = request.getHeader(b"upgrade")
        if upgrade is None or upgrade.lower() != b"websocket":
            request.setResponseCode(426)
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"WebSocket upgrade required"
        result: bytes = super().render(request)
        return result
