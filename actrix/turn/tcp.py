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
whatever else it sends.

Backpressure: the protocol is its transport's streaming producer. While the
transport's write buffer is full, relayed data from peers is dropped (as it
would be on UDP) and the connection is not read, so neither a peer flooding
the relay nor a client that sends requests but never reads can make the
buffer grow without bound. A client that stops reading altogether would still
keep its connection (and its relay port) forever, and a close waits for the
buffer to drain: so once the transport has stayed paused for ``stall_timeout``
(10 s by default), or a close has not completed within it, the connection is
aborted and its allocation deleted at once (``actrix_turn_stream_aborted``).
The timers, the producer and the closing live in
:class:`actrix.stun.stream.StreamConnection`, shared with the STUN-only
protocol; this module adds the TURN idle rule and the allocation's release.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory

from actrix.core.logthrottle import LogThrottle
from actrix.core.turnwrite import write_now
from actrix.stun import codec
from actrix.stun.protocol import BindingResponder
from actrix.stun.stream import IDLE_TIMEOUT, STALL_TIMEOUT, StreamConnection
from actrix.turn.service import TurnService
from actrix.turn.tcprelay import PeerConnection

__all__ = ["IDLE_TIMEOUT", "STALL_TIMEOUT", "TurnStreamFactory", "TurnStreamProtocol"]

MAX_FRAME = 4 + 65535 + 3
_SEND_INDICATION = codec.SEND_INDICATION.to_bytes(2, "big")


class TurnStreamProtocol(StreamConnection):
    """One TCP/TLS client; also the :class:`ClientLink` of its allocation."""

    pad = True

    def __init__(
        self,
        service: TurnService,
        responder: BindingResponder,
        transport_name: str,
        clock: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
        log_throttle: LogThrottle | None = None,
    ) -> None:
        super().__init__(
            clock, service.metrics, idle_timeout, stall_timeout, log_throttle
        )
        self._service = service
        self._data = service.data
        self._responder = responder
        self.transport_name = transport_name
        self.kind = f"TURN {transport_name}"
        self.allocation_key = self
        self._deleted_at: float | None = None
        # RFC 6062: once ConnectionBind succeeded, a raw pipe to this peer.
        self._spliced: PeerConnection | None = None

    def allocation_deleted(self) -> None:
        """The service deleted this connection's allocation: start the bound."""
        self._deleted_at = self._clock.seconds()

    def _idle_deadline(self, now: float) -> float:
        if self._data.has_allocation(self):
            self._deleted_at = None  # allocated (again): the allocation governs
            return now + self._idle_timeout
        since = self._deleted_at
        if since is None:
            since = self._last_message
        return since + self._idle_timeout

    def _release(self) -> None:
        # Idempotent: called on an abort and again when the loss is reported.
        spliced, self._spliced = self._spliced, None
        if spliced is not None:
            spliced.finish()  # the peer side goes with the data connection
        self._service.connection_lost(self)

    def splice(self, peer: PeerConnection) -> None:
        """RFC 6062 data connection: from now on bytes go straight to ``peer``.

        The idle rule and this protocol's own producer registration end: the
        peer's transport becomes this transport's producer (and vice versa).
        """
        self._spliced = peer
        self.kind = f"TURN {self.transport_name} data"
        self._cancel_idle()
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def deliver(self, data: bytes) -> None:
        if not self._paused:
            write_now(self.transport, data)

    def deliver_batch(self, frames: list[bytes]) -> None:
        if not self._paused:
            write_now(self.transport, b"".join(frames))

    def dataReceived(self, data: bytes) -> None:
        spliced = self._spliced
        if spliced is not None:
            spliced.transport.write(data)
            return
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        total = len(buffer)
        channel_data = self._data.channel_data
        allocated: bool | None = None  # looked up once per STUN-free stretch
        while total - offset >= 4:
            first = buffer[offset]
            if 0x40 <= first <= 0x7F:  # ChannelData, the hot path: no decoding
                if allocated is None:
                    allocated = self._data.has_allocation(self)
                if not allocated:
                    # ChannelData before any allocation cannot be TURN (and
                    # text such as "GET /" would otherwise wait for a huge
                    # "frame").
                    self._close("ChannelData without an allocation")
                    return
                length = (buffer[offset + 2] << 8) | buffer[offset + 3]
                size = 4 + length + (-length & 3)
                if total - offset < size:
                    break
                channel_data(buffer[offset : offset + size], self)
                offset += size
                continue
            try:
                size = codec.frame_size(buffer, offset)
            except codec.DecodeError:
                self._close("not STUN or ChannelData")
                return
            if size > MAX_FRAME:
                self._close("frame too large")
                return
            if (
                size > codec.MAX_REQUEST_STREAM
                and buffer[offset : offset + 2] != _SEND_INDICATION
            ):
                # Only Send indications carry data; nothing else needs 4 KB.
                self._close("STUN message too large")
                return
            if total - offset < size:
                break
            frame = buffer[offset : offset + size]
            offset += size
            if not self._frame(frame):
                return
            allocated = None  # a request may have made or deleted the allocation
            spliced = self._spliced
            if spliced is not None:  # ConnectionBind: the rest is peer data
                self._buffer = b""
                if offset < total:
                    spliced.transport.write(buffer[offset:])
                return
        self._buffer = buffer[offset:]

    def _frame(self, frame: bytes) -> bool:
        """One STUN message (ChannelData never gets here)."""
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
        self._service.handle_message(message, self)
        return True


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
        self._args = (
            service,
            responder,
            transport_name,
            clock,
            idle_timeout,
            stall_timeout,
            # One throttle for every connection: the log lines are per source IP.
            LogThrottle(clock),
        )

    def buildProtocol(self, addr: Any) -> TurnStreamProtocol:
        return TurnStreamProtocol(*self._args)
