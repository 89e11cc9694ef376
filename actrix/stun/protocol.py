"""STUN Binding (RFC 5389 §7.3) and the STUN-only UDP/TCP protocols (enable bit 2).

:class:`BindingResponder` builds the answer to one Binding request; the
STUN-only protocols here and the TURN protocols both call it, synchronously,
straight from ``datagramReceived``/``dataReceived``. The answer carries
XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (for RFC 3489 clients), SOFTWARE when
configured, and FINGERPRINT when the request had one. A request naming a
comprehension-required attribute we do not know gets 420 with
UNKNOWN-ATTRIBUTES. Anything that is not a valid STUN message is dropped,
and so is a message over ``codec.MAX_REQUEST_UDP`` bytes on UDP (a TCP/TLS
connection sending one over ``codec.MAX_REQUEST_STREAM`` is closed) or with
more than ``codec.MAX_ATTRIBUTES`` attributes.
A STUN-only TCP/TLS connection is closed after ``idle_timeout`` seconds
without a well-formed STUN message, and aborted once it has not read its
answers for ``stall_timeout`` (:mod:`actrix.stun.stream`).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.internet.protocol import DatagramProtocol, Factory

from actrix.core.logthrottle import LogThrottle
from actrix.stun import codec
from actrix.stun.stream import (
    IDLE_TIMEOUT,
    STALL_TIMEOUT,
    StreamConnection,
    StreamCounters,
)


class BindingCounters(Protocol):
    """The counters the Binding path increments (``TurnMetrics`` has them)."""

    bindings: int
    malformed: int


class BindingResponder:
    """Answers Binding requests; holds the precomputed SOFTWARE attribute."""

    def __init__(self, software: str, counters: BindingCounters) -> None:
        self._extra: list[tuple[int, bytes]] = (
            [(codec.SOFTWARE, software.encode())] if software else []
        )
        self._counters = counters

    def answer(self, message: codec.Message, ip: str, port: int) -> bytes | None:
        """The response bytes for a Binding request, or None for other messages.

        Binding indications (keepalives) and responses produce no answer.
        """
        if message.msg_type != codec.BINDING_REQUEST:
            return None
        txid = message.transaction_id
        unknown = _unknown_required(message)
        if unknown:
            return codec.encode(
                codec.BINDING_ERROR,
                txid,
                [
                    (codec.ERROR_CODE, codec.encode_error_code(420)),
                    (
                        codec.UNKNOWN_ATTRIBUTES,
                        codec.encode_unknown_attributes(unknown),
                    ),
                    *self._extra,
                ],
                fingerprint=message.fingerprint,
            )
        self._counters.bindings += 1
        return codec.encode(
            codec.BINDING_SUCCESS,
            txid,
            [
                (codec.XOR_MAPPED_ADDRESS, codec.encode_xor_address(ip, port, txid)),
                (codec.MAPPED_ADDRESS, codec.encode_address(ip, port)),
                *self._extra,
            ],
            fingerprint=message.fingerprint,
        )


def _unknown_required(message: codec.Message) -> list[int]:
    unknown = message.unknown
    if not unknown:
        return unknown
    # RFC 5780 CHANGE-REQUEST without flags asks for nothing we cannot do;
    # coturn's stunclient sends it that way.
    if unknown == [codec.CHANGE_REQUEST]:
        value = message.attrs[codec.CHANGE_REQUEST]
        if value == b"\x00\x00\x00\x00":
            return []
    return unknown


class StunUdpProtocol(DatagramProtocol):
    """STUN-only server on UDP: Binding requests only, everything else dropped."""

    transport: Any

    def __init__(self, responder: BindingResponder, counters: BindingCounters) -> None:
        self._responder = responder
        self._counters = counters

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if len(data) > codec.MAX_REQUEST_UDP:
            self._counters.malformed += 1
            return
        try:
            message = codec.decode(data)
        except codec.DecodeError:
            self._counters.malformed += 1
            return
        reply = self._responder.answer(message, addr[0], addr[1])
        if reply is not None:
            self.transport.write(reply, addr)


class StunTcpProtocol(StreamConnection):
    """STUN-only server on one TCP/TLS connection (RFC 5389 §7.2.2 framing)."""

    def __init__(
        self,
        responder: BindingResponder,
        counters: StreamCounters,
        clock: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
        log_throttle: LogThrottle | None = None,
    ) -> None:
        super().__init__(clock, counters, idle_timeout, stall_timeout, log_throttle)
        self._responder = responder

    def connectionMade(self) -> None:
        self.kind = (
            "STUN tls" if ISSLTransport.providedBy(self.transport) else "STUN tcp"
        )
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        while True:
            try:
                size = codec.frame_size(buffer, offset)
            except codec.DecodeError:
                self._close("not STUN")
                return
            if size == 0:
                break
            if buffer[offset] >= 0x40:
                # Checked before waiting for the whole "frame": text such as
                # "GET /" would otherwise hold the connection for 30 s.
                self._close("ChannelData on a STUN-only port")
                return
            if size > codec.MAX_REQUEST_STREAM:
                self._close("STUN message too large")
                return
            if len(buffer) - offset < size:
                break
            frame = buffer[offset : offset + size]
            offset += size
            try:
                message = codec.decode(frame)
            except codec.DecodeError:
                self._close("malformed STUN message")
                return
            self._last_message = self._clock.seconds()
            reply = self._responder.answer(message, self.address[0], self.address[1])
            if reply is not None:
                self.transport.write(reply)
        self._buffer = buffer[offset:]


class StunTcpFactory(Factory):
    """Builds :class:`StunTcpProtocol` for the STUN-only TCP/TLS listeners."""

    def __init__(
        self,
        responder: BindingResponder,
        counters: StreamCounters,
        clock: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        # One throttle for every connection: the log lines are per source IP.
        throttle = LogThrottle(clock)
        self._args = (responder, counters, clock, idle_timeout, stall_timeout, throttle)

    def buildProtocol(self, addr: Any) -> StunTcpProtocol:
        return StunTcpProtocol(*self._args)
