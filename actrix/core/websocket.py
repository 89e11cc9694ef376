"""The WebSocket edge every WS endpoint shares (Autobahn on Twisted).

:class:`EdgeProtocol` is what ``/signaling/ws``, ``/rooms/ws`` and
``/rooms/bin`` have in common below their codecs: TCP_NODELAY (Autobahn's own
attempt fails silently on Twisted), Autobahn's opening handshake, then frames
read by the ``websockets`` library's Sans-I/O codec (a third of Autobahn's
parsing cost per frame) and delivered directly as whole messages, frames
written by Autobahn without its per-call debug formatting and sent at the end
of the reactor turn (:class:`~actrix.core.turnwrite.TurnWriter`: one
``send`` per socket per turn, no poller registration), send backpressure (a
peer that stops reading is dropped once its unsent backlog passes a bound),
close frames with any code, cleanup of Autobahn's close-handshake timer, and a
compact connection: Autobahn's per-connection state in slots
(:data:`AUTOBAHN_STATE`), the handshake data dropped once open, the send deque
created only when used, and the WebSocket options held by a per-factory class
(:func:`configure`) instead of copied onto each connection.
:class:`EdgeLimits` holds the connection caps checked before the upgrade;
:class:`TokenBucket` and :class:`MessageRate` the per-connection message
limits. :class:`UpgradeOnly` answers 426 to plain GETs. Autobahn owns
``.log``, so this module logs through ``_log``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from types import FunctionType
from typing import Any, Final, TypeVar

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import succeed
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from websockets.exceptions import ProtocolError
from websockets.frames import Opcode
from websockets.protocol import Protocol as FrameCodec
from websockets.protocol import Side, State

from actrix.core.turnwrite import SendPressure, TurnWriter, batched, send_parts

_log = Logger()

# Bytes a peer may leave unread once the transport's own buffer is full.
SEND_BACKLOG_LIMIT: Final = 4 * 1024 * 1024

CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_INVALID_DATA: Final = 1007
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


# Fragments one message may arrive in (close 1009 past it).
MAX_FRAGMENTS: Final = 1024


def turn_writer(factory: Any, transport: Any) -> TurnWriter | None:
    """The factory's :class:`TurnWriter` for a plain TCP ``transport``, else None."""
    if not batched(transport):
        return None
    writer: TurnWriter | None = getattr(factory, "turn_writer", None)
    if writer is None:
        reactor: Any = transport.reactor
        writer = TurnWriter(reactor)
        factory.turn_writer = writer
    return writer


class _CodecLog(logging.Handler):
    """The frame codec's stdlib log records (warnings and errors) into ours."""

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            _log.error("WebSocket codec: {text}", text=text)
        else:
            _log.warn("WebSocket codec: {text}", text=text)


def _codec_logger() -> logging.Logger:
    logger = logging.getLogger("actrix.websocket.codec")
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    if not logger.handlers:
        logger.addHandler(_CodecLog())
    return logger


CODEC_LOG: Final = _codec_logger()
STATE_CLOSED: Final = WebSocketServerProtocol.STATE_CLOSED
_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_CLOSE: Final = Opcode.CLOSE
_PING: Final = Opcode.PING
_PONG: Final = Opcode.PONG


class EdgeProtocol(WebSocketServerProtocol):
    """One server WebSocket with the shared edge behaviour.

    Subclasses implement ``onMessage`` (called directly, once per complete
    message), call ``super().onOpen()`` if they override it, and may override
    :meth:`edge_closed` and :meth:`edge_slow_reader`. The factory may set
    ``send_backlog_limit``.

    Autobahn runs the opening handshake and writes frames; once the
    connection is open, frames are read by the Sans-I/O protocol of the
    ``websockets`` library (:data:`_codec`), whose parser costs a third of
    Autobahn's per frame (a relayed message is parsed once per hop). It
    enforces the message size (close 1009), masking and framing rules (1002)
    and answers pings; the edge assembles fragmented messages, checks text
    messages are UTF-8 (1007), and runs the closing handshake with it. The
    edge carries no RFC 6455 codec of its own.
    """

    __slots__ = (
        *AUTOBAHN_STATE,
        "_codec",
        "_fragments",
        "_ip",
        "_pressure",
        "_writer",
        "last_inbound",
    )
    # Autobahn options (class attributes, see configure).
    logOctets: bool
    closeHandshakeTimeout: float
    maxMessagePayloadSize: int

    def __init__(self) -> None:
        for name, value in _SLOT_DEFAULTS:
            setattr(self, name, value)
        self._pressure = SendPressure()
        self._ip = ""
        self.last_inbound = 0.0
        self._codec: FrameCodec | None = None
        self._writer: TurnWriter | None = None  # set when open, for TCP
        # (opcode, parts) of a fragmented message being received.
        self._fragments: tuple[Opcode, list[bytes]] | None = None
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
        # Frames from here on go to the codec (Autobahn hands over what the
        # handshake's last read brought through consumeData, just after this).
        self._codec = FrameCodec(
            Side.SERVER,
            state=State.OPEN,
            max_size=self.maxMessagePayloadSize or None,
            logger=CODEC_LOG,
        )
        # Writes wait for the turn's end from here on (the handshake's answer
        # went out directly, so nothing can overtake it).
        self._writer = turn_writer(self.factory, self.transport)

    def dataReceived(self, data: bytes) -> None:
        codec = self._codec
        if codec is None:
            # The opening handshake: Autobahn's parser. (Its public method
            # formats a debug line's arguments on every read.)
            self._dataReceived(data)
        else:
            self._frames_received(codec, data)

    def consumeData(self) -> None:
        codec = self._codec
        if codec is None:
            super().consumeData()
        elif self.data:
            data, self.data = self.data, b""
            self._frames_received(codec, data)

    def _frames_received(self, codec: FrameCodec, data: bytes) -> None:
        """Parse ``data``; deliver complete messages; write what the codec says."""
        codec.receive_data(data)
        frames: list[Any] = codec.events_received()  # Frames, once open
        for frame in frames:
            if frame.opcode is _BINARY and frame.fin and self._fragments is None:
                if self.state == WebSocketServerProtocol.STATE_OPEN:
                    self.onMessage(frame.data, True)
            else:
                self._other_frame(codec, frame)
        if codec.writes:
            self._codec_writes(codec)

    def _other_frame(self, codec: FrameCodec, frame: Any) -> None:
        """A text, fragmented or control frame (the codec checked its framing:
        continuations follow a first fragment, control frames are whole)."""
        opcode = frame.opcode
        if opcode is _PING:
            self.onPing(frame.data)  # the codec has queued the pong
        elif opcode is _PONG:
            self.onPong(frame.data)
        elif opcode is _CLOSE:
            self._close_received(codec)
        elif opcode is _CONT or not frame.fin:
            fragments = self._fragments
            if fragments is None:
                self._fragments = fragments = (opcode, [])
            elif len(fragments[1]) >= MAX_FRAGMENTS:
                # Empty fragments never reach the size limit; this bounds them.
                self._fragments = None
                self._fail(codec, CLOSE_TOO_BIG, "too many fragments")
                return
            fragments[1].append(frame.data)
            if frame.fin:
                self._fragments = None
                self._deliver(codec, b"".join(fragments[1]), fragments[0])
        else:
            self._deliver(codec, frame.data, opcode)

    def _deliver(self, codec: FrameCodec, payload: bytes, opcode: Opcode) -> None:
        """Hand over a whole message; a text one must be UTF-8 (else close 1007)."""
        if opcode is _TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(codec, CLOSE_INVALID_DATA, "invalid UTF-8")
                return
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.onMessage(payload, opcode is _BINARY)

    def _fail(self, codec: FrameCodec, code: int, reason: str) -> None:
        """Fail the connection: close frame, then TCP close; nothing more delivered."""
        self.wasNotCleanReason = reason
        codec.fail(code, reason)
        self.state = WebSocketServerProtocol.STATE_CLOSING

    def _close_received(self, codec: FrameCodec) -> None:
        """The peer sent a close frame; the codec has queued the reply and EOF."""
        received = codec.close_rcvd
        if received is not None:
            self.remoteCloseCode = received.code
            self.remoteCloseReason = received.reason
        self.wasClean = True
        self.state = WebSocketServerProtocol.STATE_CLOSING

    def _codec_writes(self, codec: FrameCodec) -> None:
        """Write the codec's pongs and close frames; its EOF closes the socket."""
        transport: Any = self.transport
        for data in codec.data_to_send():
            if data:
                # Pongs to a peer that stopped reading count toward the same
                # bound as messages (a ping flood cannot pile them up).
                if self._pressure.full and self._backlogged(len(data)):
                    return
                self._write(data)
            else:
                self._flush_pending()
                # A server closes the TCP connection first (RFC 6455 §7.1.1).
                failed = codec.parser_exc
                if failed is not None:
                    self.wasClean = False
                    self.wasNotCleanReason = self.wasNotCleanReason or str(failed)
                self.state = WebSocketServerProtocol.STATE_CLOSING
                transport.loseConnection()

    def onPing(self, payload: bytes) -> None:
        # The codec answers pings once open; Autobahn's handler would answer
        # a second time.
        if self._codec is None:
            super().onPing(payload)

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
        self._write(data)
        state = self.state
        if state == WebSocketServerProtocol.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif state == WebSocketServerProtocol.STATE_CONNECTING:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            transport: Any = self.transport
            transport.write(data)
        else:
            writer.add(self, data)

    def write_out(self, parts: list[bytes]) -> None:
        """Send ``parts`` (the :class:`TurnWriter` calls this)."""
        send_parts(self.transport, parts)

    def _flush_pending(self) -> None:
        if self._writer is not None:
            self._writer.flush_one(self)

    def dropConnection(self, abort: bool = False) -> None:
        # What the turn holds goes out before a clean close's FIN; an abort
        # discards it with the rest of the socket's buffer.
        if not abort:
            self._flush_pending()
        else:
            self._drop_pending()
        super().dropConnection(abort)

    def _drop_pending(self) -> None:
        if self._writer is not None:
            self._writer.drop(self)

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
            self._drop_pending()
            self._writer = None
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
        """Write what is pending for this socket now, not at the turn's end.

        For messages another process relayed here: they already waited a
        reactor turn there, and a second wait would make every relay between
        workers or nodes take two turns where a local one takes one. What the
        socket cannot take stays in the transport's buffer for the reactor.
        TLS sockets are written by their transport as before.
        """
        writer = self._writer
        if writer is not None:
            writer.flush_one(self)

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
        limit = getattr(self.factory, "send_backlog_limit", SEND_BACKLOG_LIMIT)
        if not pressure.over(size, limit):
            return False
        self.edge_slow_reader(pressure.unsent)
        self.dropConnection(abort=True)
        return True

    def close_session(self, code: int, reason: str) -> None:
        """Close with ``code`` (any, including 1001/1007/4xxx), or abort if closing."""
        codec = self._codec
        if self.state == WebSocketServerProtocol.STATE_OPEN and codec is not None:
            self.closedByMe = True
            self.localCloseCode = code  # type: ignore[assignment]
            self.localCloseReason = reason  # type: ignore[assignment]
            try:
                codec.send_close(code, _close_reason(reason))
            except ProtocolError:  # a code RFC 6455 keeps off the wire (1005, 1006)
                codec.send_close(CLOSE_INTERNAL, _close_reason(reason))
            self.state = WebSocketServerProtocol.STATE_CLOSING
            self._codec_writes(codec)
            # The peer has closeHandshakeTimeout seconds to answer.
            if self.closeHandshakeTimeout > 0 and self.state != STATE_CLOSED:
                timer: Any = self.factory._batched_timer  # as Autobahn's own close
                self.closeHandshakeTimeoutCall = timer.call_later(
                    self.closeHandshakeTimeout, self.onCloseHandshakeTimeout
                )
        elif self.state == WebSocketServerProtocol.STATE_OPEN:
            # sendClose refuses protocol codes such as 1001 and 1007; the frame
            # method underneath takes any code.
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)
        elif self.state != WebSocketServerProtocol.STATE_CLOSED:
            self.dropConnection(abort=True)

    def abort(self) -> None:
        self.dropConnection(abort=True)


def _close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame carries (123 bytes of UTF-8)."""
    return reason.encode("utf-8")[:123].decode("utf-8", "ignore")


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
