"""The WebSocket edge every WS endpoint shares (Autobahn on Twisted).

:class:`EdgeProtocol` is what ``/signaling/ws``, ``/rooms/ws`` and
``/rooms/bin`` have in common below their codecs: TCP_NODELAY (Autobahn's own
attempt fails silently on Twisted), send backpressure (a peer that stops reading
is dropped once its unsent backlog passes a bound), reads handed to Autobahn's
parser and writes to the transport without its per-call debug formatting, direct
delivery of complete messages (no per-message Deferred), close frames with any
code, cleanup of Autobahn's close-handshake timer, and a compact connection:
Autobahn's per-connection state in slots (:data:`AUTOBAHN_STATE`), the handshake
data dropped once open, the send deque created only when used, and the WebSocket
options held by a per-factory class (:func:`configure`) instead of copied onto
each connection. :class:`EdgeLimits` holds the connection caps checked before
the upgrade; :class:`TokenBucket` and :class:`MessageRate` the per-connection
message limits. :class:`UpgradeOnly` answers 426 to plain GETs. Autobahn owns
``.log``, so this module logs through ``_log``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from types import FunctionType
from typing import Any, Final, TypeVar

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import succeed
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


# What Autobahn (26.x) and Twisted set on a server protocol instance, apart from
# its options. In a __dict__ they take ~3 KB per connection; as slots 8 bytes
# each. A name missing here still works (it lands in the instance __dict__),
# so the list need only be complete to be compact; a unit test checks it.
AUTOBAHN_STATE: Final = (
    "_isMessageCompressed",
    "_perMessageCompress",
    "_results",
    "_transport_details",
    "_valid_events",
    "_wskey",
    "autoPingPending",
    "autoPingPendingCall",
    "autoPingPendingSent",
    "autoPingPendingSeq",
    "autoPingTimeoutCall",
    "closeHandshakeTimeoutCall",
    "closedByMe",
    "connected",
    "current_frame",
    "current_frame_masker",
    "data",
    "droppedByMe",
    "factory",
    "failedByMe",
    "frame_data",
    "frame_length",
    "http_headers",
    "http_request_data",
    "http_request_host",
    "http_request_params",
    "http_request_path",
    "http_request_uri",
    "http_response_data",
    "http_status_line",
    "inside_message",
    "is_closed",
    "is_open",
    "localCloseCode",
    "localCloseReason",
    "message_data",
    "message_data_total_length",
    "message_is_binary",
    "openHandshakeTimeoutCall",
    "peer",
    "remoteCloseCode",
    "remoteCloseReason",
    "send_queue",
    "send_state",
    "serverConnectionDropTimeoutCall",
    "state",
    "trackedTimings",
    "trafficStats",
    "transport",
    "triggered",
    "utf8validateIncomingCurrentMessage",
    "utf8validator",
    "wasClean",
    "wasCloseHandshakeTimeout",
    "wasMaxFramePayloadSizeExceeded",
    "wasMaxMessagePayloadSizeExceeded",
    "wasNotCleanReason",
    "wasOpenHandshakeTimeout",
    "wasServerConnectionDropTimeout",
    "wasServingFlashSocketPolicyFile",
    "websocket_extensions",
    "websocket_extensions_in_use",
    "websocket_origin",
    "websocket_protocol_in_use",
    "websocket_protocols",
    "websocket_version",
)
# Opening-handshake data Autobahn keeps afterwards (~2 KB); dropped on open.
HANDSHAKE_STATE: Final = (
    "http_headers",
    "http_request_data",
    "http_request_host",
    "http_request_params",
    "http_request_path",
    "http_request_uri",
    "http_response_data",
    "http_status_line",
    "websocket_extensions",
    "websocket_origin",
    "websocket_protocols",
)


def _class_defaults(names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """``(name, value)`` for each slot Autobahn also defines on a class.

    An unset slot raises AttributeError where a missing instance attribute
    would have read the class attribute, so such slots start at that value.
    """
    missing = object()
    found = []
    for name in names:
        for klass in WebSocketServerProtocol.__mro__:
            value = klass.__dict__.get(name, missing)
            if value is not missing:
                found.append((name, value))
                break
    return tuple(found)


_SLOT_DEFAULTS: Final = _class_defaults(AUTOBAHN_STATE)


class LazySendQueue:
    """Autobahn's send deque, created on the first append.

    Autobahn queues only synchronous or chopped sends, which the edge never
    makes, yet gives every connection an empty deque (~700 bytes).
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketServerProtocol) -> None:
        self._protocol = protocol

    def __len__(self) -> int:
        return 0

    def append(self, item: Any) -> None:
        self._protocol.send_queue = deque((item,))

    def popleft(self) -> Any:
        raise IndexError("pop from an empty deque")


class EdgeProtocol(WebSocketServerProtocol):
    """One server WebSocket with the shared edge behaviour.

    Subclasses implement ``onMessage`` (called directly, once per complete
    message), call ``super().onOpen()`` if they override it, and may override
    :meth:`edge_closed` and :meth:`edge_slow_reader`. The factory may set
    ``send_backlog_limit``. Frames are parsed and written by Autobahn only:
    the edge carries no RFC 6455 codec of its own.
    """

    __slots__ = (*AUTOBAHN_STATE, "_ip", "_pressure", "last_inbound")
    logOctets: bool  # an Autobahn option (class attribute, see configure)

    def __init__(self) -> None:
        for name, value in _SLOT_DEFAULTS:
            setattr(self, name, value)
        self._pressure = SendPressure()
        self._ip = ""
        self.last_inbound = 0.0
        super().__init__()

    @property
    def remote_ip(self) -> str:
        """The client's IP address ("" before the connection is made)."""
        return self._ip

    def connectionMade(self) -> None:
        super().connectionMade()
        self.send_queue = LazySendQueue(self)  # type: ignore[assignment]  # a duck
        transport: Any = self.transport
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        # Twisted Web's HTTPChannel registered itself as the socket's producer
        # and no longer owns the socket after the upgrade; take its place to
        # learn when the peer stops reading.
        with contextlib.suppress(RuntimeError):  # nothing was registered
            self.unregisterProducer()
        self.registerProducer(self._pressure, True)
        peer = transport.getPeer()
        self._ip = str(getattr(peer, "host", ""))

    def onOpen(self) -> None:
        for name in HANDSHAKE_STATE:
            setattr(self, name, None)
        # Read by Autobahn only while opening (TLS channel id, peer cert).
        self._transport_details = None  # type: ignore[assignment]  # not read again

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's public method formats a debug line's arguments on every
        # read; its parser underneath is what we want, unchanged.
        self._dataReceived(data)

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        # Autobahn's version formats a debug line's arguments (type names,
        # peer, length) on every frame it writes, logged or not; the frame
        # itself is built by Autobahn's sendFrame as before. Queued, chopped
        # or octet-logged sends take Autobahn's path unchanged.
        if sync or chopsize or self.logOctets or len(self.send_queue) > 0:
            super().sendData(data, sync, chopsize)
            return
        transport: Any = self.transport
        transport.write(data)
        state = self.state
        if state == WebSocketServerProtocol.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif state == WebSocketServerProtocol.STATE_CONNECTING:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

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
            # Two references back at this connection make it a garbage cycle
            # that only the collector would free (with all it holds): the lazy
            # send queue, and the is_closed Deferred, whose result Autobahn
            # sets to the connection itself. Cut both; is_closed stays fired.
            queue: Any = self.send_queue  # typed as a deque by Autobahn
            if isinstance(queue, LazySendQueue):
                self.send_queue = deque()
            closed: Any = self.is_closed
            if closed is not None and closed.called and closed.result is self:
                self.is_closed = succeed(None)
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

    def send_bytes(self, data: bytes) -> bool:
        """Send one binary message unless closing or the peer stopped reading."""
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return False
        if self._pressure.full and self._backlogged(len(data)):
            return False
        self.sendMessage(data, isBinary=True)
        return True

    def flush_now(self) -> None:
        """Write what is queued for this socket now, not at the reactor's next turn.

        For messages another process relayed here: they already waited a
        reactor turn there, and a second wait would make every relay between
        workers or nodes take two turns where a local one takes one. Calls the
        socket's ``doWrite`` (``IWriteDescriptor``) as the reactor would when
        the socket is writable; a socket that cannot take the bytes keeps them
        for the reactor. Not for TLS (no descriptor of its own) or a closing
        socket, whose end the reactor must see.
        """
        transport: Any = self.transport
        if (
            isinstance(transport, FileDescriptor)
            and transport.connected
            and not transport.disconnecting
        ):
            transport.doWrite()

    def send_frame(self, data: bytes, binary: bool) -> bool:
        """Send one message (text or binary) as :meth:`send_bytes` does."""
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return False
        if self._pressure.full and self._backlogged(len(data)):
            return False
        self.sendMessage(data, isBinary=binary)
        return True

    def _backlogged(self, size: int) -> bool:
        """Count ``size`` unsent bytes; past the bound, drop the peer (True)."""
        pressure = self._pressure
        pressure.unsent += size
        limit = getattr(self.factory, "send_backlog_limit", SEND_BACKLOG_LIMIT)
        if pressure.unsent <= limit:
            return False
        self.edge_slow_reader(pressure.unsent)
        self.dropConnection(abort=True)
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


E = TypeVar("E", bound=EdgeProtocol)


def edge_options(factory: WebSocketServerFactory, max_message_size: int) -> None:
    """The Autobahn options every endpoint uses (frame cap → close 1009), then
    :func:`configure` (so set the factory's ``protocol`` first)."""
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
    base: Any = factory.protocol  # an EdgeProtocol subclass, set by the caller
    factory.protocol = configure(factory, base)


def configure(factory: WebSocketServerFactory, base: type[E]) -> type[E]:
    """A subclass of ``base`` carrying ``factory``'s WebSocket options.

    Autobahn copies every name in ``CONFIG_ATTRS`` from the factory onto each
    new connection (and formats them all for a debug line); as class
    attributes of one subclass per factory they are shared instead. Options
    set on the factory afterwards no longer reach new connections.
    """
    options = {
        name: getattr(factory, name) for name in WebSocketServerProtocol.CONFIG_ATTRS
    }
    for name, value in options.items():
        # A function (perMessageCompressionAccept) must not become a method.
        if isinstance(value, FunctionType):
            options[name] = staticmethod(value)
    configured: type[E] = type(
        f"Configured{base.__name__}",
        (base,),
        {**options, "CONFIG_ATTRS": (), "__slots__": ()},
    )
    return configured


class EdgeResource(WebSocketResource):
    """Autobahn's WebSocket resource, leaving no garbage cycle per upgrade.

    Autobahn takes the socket from Twisted Web; the HTTP channel and its last
    request are then done, but they point at each other (``channel.requests``,
    ``request.channel``) with their headers and buffers: ~25 objects per
    connection that only the garbage collector would free, feeding its
    collections at 1 000 connections a second. Untied here, they are freed as
    soon as the upgrade returns.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        channel: Any = request.channel
        result: bytes = super().render(request)
        if channel is not None and channel.transport is None:  # upgraded
            requests = getattr(channel, "requests", None)
            if requests is not None and request in requests:
                requests.remove(request)
            request.channel = None  # type: ignore[assignment]  # request is done
        return result


class UpgradeOnly(EdgeResource):
    """A WebSocket path: a GET without ``Upgrade`` gets 426 ``text/plain``."""

    def render(self, request: Request) -> bytes:
        upgrade = request.getHeader(b"upgrade")
        if upgrade is None or upgrade.lower() != b"websocket":
            request.setResponseCode(426)
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"WebSocket upgrade required"
        return super().render(request)
