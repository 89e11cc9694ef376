"""TURN over TCP and TLS (``turns:``): RFC 5766 §2.1 stream framing.

One :class:`TurnStreamProtocol` per connection frames the byte stream into
STUN messages (20-byte header + length) and ChannelData (4-byte header +
length padded to a multiple of 4). The connection is the client side of the
allocation's 5-tuple; the relay side is still UDP. A stream that is not STUN or
ChannelData, or a malformed STUN message, closes the connection; a stream that
stops mid-frame just waits, until the idle timeout closes it.

Idle timeout (``idle_timeout``, 30 s by default): a connection without an
allocation is closed once that long has passed since its last well-formed STUN
message (or since it opened); once its allocation is deleted (Refresh 0,
expiry), it is closed that long after the deletion unless it allocates again,
whatever else it sends. One ``callLater`` per connection, re-armed lazily when
it fires, so the per-message cost is one clock read.

Backpressure: the protocol is its transport's streaming producer. While the
transport's write buffer is full, relayed data from peers is dropped (as it
would be on UDP) and the connection is not read, so neither a peer flooding
the relay nor a client that sends requests but never reads can make the
buffer grow without bound. A client that stops reading altogether would still
keep its connection (and its relay port) forever, and a close waits for the
buffer to drain: so once the transport has stayed paused for ``stall_timeout``
(10 s by default), or a close has not completed within it, the connection is
aborted and its allocation deleted at once (``actrix_turn_stream_aborted``).
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from actrix.stun import codec
from actrix.stun.protocol import BindingResponder
from actrix.turn.service import TurnService

log = Logger()

MAX_FRAME = 4 + 65535 + 3
IDLE_TIMEOUT: Final = 30.0
STALL_TIMEOUT: Final = 10.0


@implementer(IPushProducer)
class TurnStreamProtocol(Protocol):
    """One TCP/TLS client; also the :class:`ClientLink` of its allocation."""

    transport: Any

    pad = True

    def __init__(
        self,
        service: TurnService,
        responder: BindingResponder,
        transport_name: str,
        clock: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self._service = service
        self._responder = responder
        self.transport_name = transport_name
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._buffer = b""
        self.address: tuple[str, int] = ("", 0)
        self.allocation_key = self
        self._last_message = 0.0
        self._deleted_at: float | None = None
        self._idle_call: IDelayedCall | None = None
        self._stall_timeout = stall_timeout
        self._stall_call: IDelayedCall | None = None
        self._paused = False
        self._producing = False
        self._closing = False
        self._finished = False  # aborted or lost: no more timers

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = (peer.host, peer.port)
        self._last_message = self._clock.seconds()
        self._idle_call = self._clock.callLater(self._idle_timeout, self._idle_check)
        self.transport.registerProducer(self, True)
        self._producing = True

    def pauseProducing(self) -> None:
        """The write buffer is full: drop relayed data, stop reading requests."""
        self._paused = True
        self.transport.pauseProducing()
        self._arm_stall()

    def resumeProducing(self) -> None:
        """The write buffer drained."""
        self._paused = False
        self.transport.resumeProducing()
        if not self._closing:
            self._disarm_stall()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._paused = True

    def allocation_deleted(self) -> None:
        """The service deleted this connection's allocation: start the bound."""
        self._deleted_at = self._clock.seconds()

    def _idle_check(self) -> None:
        self._idle_call = None
        now = self._clock.seconds()
        if self in self._service.allocations:
            self._deleted_at = None  # allocated (again): the allocation governs
            deadline = now + self._idle_timeout
        else:
            since = self._deleted_at
            if since is None:
                since = self._last_message
            deadline = since + self._idle_timeout
            if deadline <= now:
                self._close_idle()
                return
        self._idle_call = self._clock.callLater(deadline - now, self._idle_check)

    def _close_idle(self) -> None:
        log.info(
            "closing idle TURN {transport} connection from {client}",
            transport=self.transport_name,
            client=self.address[0],
        )
        self._lose()

    def _lose(self) -> None:
        self._buffer = b""
        if self._producing:
            # With a producer registered a paused TCP transport never finishes
            # closing, and TLS waits for the producer to go before shutting down.
            self._producing = False
            self.transport.unregisterProducer()
        self._closing = True
        self.transport.loseConnection()
        # The close itself waits for the write buffer to drain: bound it too.
        self._arm_stall()

    def _arm_stall(self) -> None:
        if self._stall_call is None and not self._finished:
            self._stall_call = self._clock.callLater(self._stall_timeout, self._stalled)

    def _disarm_stall(self) -> None:
        stall_call, self._stall_call = self._stall_call, None
        if stall_call is not None and stall_call.active():
            stall_call.cancel()

    def _stalled(self) -> None:
        """The client has not read for ``stall_timeout``: abort, free the relay."""
        self._stall_call = None
        if self._finished:
            return
        self._finished = True
        idle_call, self._idle_call = self._idle_call, None
        if idle_call is not None and idle_call.active():
            idle_call.cancel()
        self._service.metrics.stream_aborted += 1
        log.warn(
            "aborting TURN {transport} connection from {client}: "
            "not reading for {seconds} s",
            transport=self.transport_name,
            client=self.address[0],
            seconds=self._stall_timeout,
        )
        self._buffer = b""
        self._paused = True
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        # Delete the allocation now: the transport reports the loss later
        # (and a fake or a wedged one might not), connection_lost is idempotent.
        self._service.connection_lost(self)
        self.transport.abortConnection()

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def deliver(self, data: bytes) -> None:
        if not self._paused:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        total = len(buffer)
        while total - offset >= 4:
            try:
                size = codec.frame_size(buffer, offset)
            except codec.DecodeError:
                self._close("not STUN or ChannelData")
                return
            if size > MAX_FRAME:
                self._close("frame too large")
                return
            if buffer[offset] >= 0x40 and self not in self._service.allocations:
                # ChannelData before any allocation cannot be TURN (and text
                # such as "GET /" would otherwise wait for a huge "frame").
                self._close("ChannelData without an allocation")
                return
            if total - offset < size:
                break
            frame = buffer[offset : offset + size]
            offset += size
            if not self._frame(frame):
                return
        self._buffer = buffer[offset:]

    def _frame(self, frame: bytes) -> bool:
        service = self._service
        if frame[0] >= 0x40:
            allocation = service.allocations.get(self)
            if allocation is not None:
                service.channel_data(allocation, frame)
            return True
        try:
            message = codec.decode(frame)
        except codec.DecodeError:
            self._close("malformed STUN message")
            return False
        self._last_message = self._clock.seconds()
        if message.msg_type == codec.BINDING_REQUEST:
            reply = self._responder.answer(message, self.address[0], self.address[1])
            if reply is not None:
                self.transport.write(reply)
            return True
        service.handle_message(message, self)
        return True

    def _close(self, why: str) -> None:
        self._service.metrics.malformed += 1
        log.info(
            "closing TURN {transport} connection from {client}: {why}",
            transport=self.transport_name,
            client=self.address[0],
            why=why,
        )
        self._lose()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._buffer = b""
        self._paused = True
        self._producing = False
        self._finished = True
        idle_call, self._idle_call = self._idle_call, None
        if idle_call is not None and idle_call.active():
            idle_call.cancel()
        self._disarm_stall()
        self._service.connection_lost(self)


class TurnStreamFactory(Factory):
    """Builds :class:`TurnStreamProtocol` for the ``ice-tcp``/``ice-tls`` listeners."""

    def __init__(
        self,
        service: TurnService,
        responder: BindingResponder,
        transport_name: str,
        clock: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self._service = service
        self._responder = responder
        self._transport_name = transport_name
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._stall_timeout = stall_timeout

    def buildProtocol(self, addr: Any) -> TurnStreamProtocol:
        return TurnStreamProtocol(
            self._service,
            self._responder,
            self._transport_name,
            self._clock,
            self._idle_timeout,
            self._stall_timeout,
        )
