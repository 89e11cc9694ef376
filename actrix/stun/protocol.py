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

import socket
import struct
import zlib
from typing import Any, Final, Protocol

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


# A Binding success for an IPv4 client: header, XOR-MAPPED-ADDRESS and
# MAPPED-ADDRESS in one pack (SOFTWARE and FINGERPRINT follow).
_SUCCESS_V4 = struct.Struct("!HHI12sHHxBH4sHHxBH4s")
_FP_ATTR_HEADER: Final = struct.pack("!HH", codec.FINGERPRINT, 4)
_U32 = struct.Struct("!I")
_COOKIE_HIGH: Final = codec.MAGIC_COOKIE >> 16
MAX_CACHED_IPS: Final = 4096
BARE_BINDING_PREFIX: Final = b"\x00\x01\x00\x00" + codec.MAGIC_BYTES
"""The first 8 bytes of a 20-byte Binding request without attributes."""


class BindingResponder:
    """Answers Binding requests; holds the precomputed SOFTWARE attribute.

    IPv4 answers are packed in one ``struct`` call from a per-address cache
    of the packed and XOR-ed address (bounded); IPv6 ones go through
    :func:`codec.encode`. Both produce the same bytes as the general encoder.
    """

    def __init__(self, software: str, counters: BindingCounters) -> None:
        self._extra: list[tuple[int, bytes]] = (
            [(codec.SOFTWARE, software.encode())] if software else []
        )
        # The SOFTWARE attribute as it goes on the wire (header and padding).
        self._tail = codec.encode(0, bytes(12), self._extra)[codec.HEADER_SIZE :]
        self._length = 24 + len(self._tail)
        self._counters = counters
        self._ipv4: dict[str, tuple[bytes, bytes]] = {}

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
        return self._success(txid, ip, port, message.fingerprint)

    def answer_bare(self, request: bytes, ip: str, port: int) -> bytes:
        """The answer to a 20-byte Binding request starting with BARE_BINDING_PREFIX.

        Such a request has no attributes, so it needs no decoding: only its
        transaction id is used.
        """
        self._counters.bindings += 1
        return self._success(request[8:20], ip, port, False)

    def _success(self, txid: bytes, ip: str, port: int, fingerprint: bool) -> bytes:
        addresses = self._ipv4.get(ip)
        if addresses is None:
            addresses = self._ipv4_addresses(ip)
            if addresses is None:  # IPv6
                return codec.encode(
                    codec.BINDING_SUCCESS,
                    txid,
                    [
                        (
                            codec.XOR_MAPPED_ADDRESS,
                            codec.encode_xor_address(ip, port, txid),
                        ),
                        (codec.MAPPED_ADDRESS, codec.encode_address(ip, port)),
                        *self._extra,
                    ],
                    fingerprint=fingerprint,
                )
        packed, xored = addresses
        message = (
            _SUCCESS_V4.pack(
                codec.BINDING_SUCCESS,
                self._length + 8 if fingerprint else self._length,
                codec.MAGIC_COOKIE,
                txid,
                codec.XOR_MAPPED_ADDRESS,
                8,
                codec.FAMILY_IPV4,
                port ^ _COOKIE_HIGH,
                xored,
                codec.MAPPED_ADDRESS,
                8,
                codec.FAMILY_IPV4,
                port,
                packed,
            )
            + self._tail
        )
        if fingerprint:
            crc = zlib.crc32(message) ^ codec.FINGERPRINT_XOR
            return message + _FP_ATTR_HEADER + _U32.pack(crc)
        return message

    def _ipv4_addresses(self, ip: str) -> tuple[bytes, bytes] | None:
        try:
            packed = socket.inet_pton(socket.AF_INET, ip)
        except OSError:
            return None
        xored = bytes(a ^ b for a, b in zip(packed, codec.MAGIC_BYTES, strict=True))
        if len(self._ipv4) >= MAX_CACHED_IPS:
            self._ipv4.clear()
        self._ipv4[ip] = (packed, xored)
        return packed, xored


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
        if len(data) == codec.HEADER_SIZE and data[:8] == BARE_BINDING_PREFIX:
            bare = self._responder.answer_bare(data, addr[0], addr[1])
            self.transport.write(bare, addr)
            return
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
