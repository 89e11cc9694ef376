"""PROXY protocol v2 on stream listeners: the real client address behind an L4 balancer.

A listener with PROXY protocol on wraps its factory (outside TLS: the
balancer sends the header in clear before the TLS handshake) in
:class:`ProxyHeaderFactory`. For a connection from a trusted network (the
balancer) the first bytes must be a v2 header; the inner protocol is
connected only once it has been read, and its ``getPeer()`` is then the
client the header names, so everything downstream (XOR-MAPPED-ADDRESS,
nonces bound to the client IP, per-IP limits, logs) sees the real client.
A LOCAL header (the balancer's own health check) keeps the balancer's
address. A connection from anywhere else is passed through untouched unless
it starts like a PROXY header (v2 signature or v1 ``PROXY ``), which a
client must not be able to forge: it is closed.

The parser is ours (:func:`parse_v2`) and bounded: the header is at most
16 + :data:`MAX_ADDRESS_BLOCK` bytes, a trusted connection must complete it
within :data:`HEADER_TIMEOUT` seconds, TLVs are skipped unread. Twisted's
``twisted.protocols.haproxy`` wrapper is not used: its parser is private API,
it has no notion of trusted sources, closes a header split across two
reads, and also accepts v1 text headers.

Every outcome is counted (``proxy_headers[outcome]`` on the injected
counters) and refusals are logged through the shared LogThrottle.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final, Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from actrix.core.logthrottle import LogThrottle

log = Logger()

SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX: Final = b"PROXY "
HEADER_SIZE: Final = 16
MAX_ADDRESS_BLOCK: Final = 1024  # addresses + TLVs; haproxy itself sends < 300
HEADER_TIMEOUT: Final = 5.0

_FIXED = struct.Struct("!12sBBH")
_V4 = struct.Struct("!4s4sHH")
_V6 = struct.Struct("!16s16sHH")


class ProxyHeaderError(ValueError):
    """The bytes are not an acceptable PROXY v2 header (``reason`` labels it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProxyCounters(Protocol):
    """Where the outcomes are counted (``TurnMetrics`` in the daemon)."""

    proxy_headers: Counter[str]


def parse_v2(data: bytes) -> tuple[int, tuple[str, int] | None] | None:
    """Parse the v2 header at the start of ``data``.

    Returns:
        None while more bytes are needed, else (header size, the client's
        (ip, port), or None for LOCAL/UNSPEC: keep the connection's address).

    Raises:
        ProxyHeaderError: not a v2 header, a bad version/command/family, an
            address block too short for its family or longer than the bound.
    """
    have = min(len(data), len(SIGNATURE))
    if data[:have] != SIGNATURE[:have]:
        raise ProxyHeaderError("not_proxy_v2")
    if len(data) < HEADER_SIZE:
        return None
    _, version_command, family_protocol, length = _FIXED.unpack_from(data)
    if version_command >> 4 != 2:
        raise ProxyHeaderError("version")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError("command")
    if length > MAX_ADDRESS_BLOCK:
        raise ProxyHeaderError("too_long")
    size = HEADER_SIZE + length
    if len(data) < size:
        return None
    if command == 0:
        return size, None  # LOCAL: the balancer speaking for itself
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if family == 0:
        return size, None  # UNSPEC: no address given
    if protocol != 1:
        raise ProxyHeaderError("not_stream")
    if family == 1:
        if length < _V4.size:
            raise ProxyHeaderError("short_address")
        src, _, sport, _ = _V4.unpack_from(data, HEADER_SIZE)
        return size, (socket.inet_ntop(socket.AF_INET, src), sport)
    if family == 2:
        if length < _V6.size:
            raise ProxyHeaderError("short_address")
        src, _, sport, _ = _V6.unpack_from(data, HEADER_SIZE)
        return size, (str(ipaddress.IPv6Address(src)), sport)
    raise ProxyHeaderError("family")


def encode_v2(
    source: tuple[str, int] | None,
    destination: tuple[str, int] = ("0.0.0.0", 0),  # noqa: S104 (an address, no bind)
) -> bytes:
    """A v2 PROXY (or, without ``source``, LOCAL) header over TCP; for clients/tests."""
    if source is None:
        return _FIXED.pack(SIGNATURE, 0x20, 0x00, 0)
    if ":" in source[0]:
        dst = destination if ":" in destination[0] else ("::", 0)
        block = _V6.pack(
            socket.inet_pton(socket.AF_INET6, source[0]),
            socket.inet_pton(socket.AF_INET6, dst[0]),
            source[1],
            dst[1],
        )
        return _FIXED.pack(SIGNATURE, 0x21, 0x21, len(block)) + block
    block = _V4.pack(
        socket.inet_pton(socket.AF_INET, source[0]),
        socket.inet_pton(socket.AF_INET, destination[0]),
        source[1],
        destination[1],
    )
    return _FIXED.pack(SIGNATURE, 0x21, 0x11, len(block)) + block


class ProxyPolicy:
    """Which peers may send a PROXY header, and where outcomes are reported."""

    def __init__(
        self,
        trusted: Iterable[str],
        counters: ProxyCounters,
        clock: IReactorTime,
        log_throttle: LogThrottle,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self.counters = counters
        self.clock = clock
        self.log_throttle = log_throttle
        self.header_timeout = header_timeout

    def trusts(self, host: str) -> bool:
        """Whether ``host`` is a balancer allowed to speak PROXY."""
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def refused(self, host: str, reason: str, listener: str) -> None:
        """Count and (throttled per source and reason) log a closed connection."""
        self.counters.proxy_headers[reason] += 1
        suppressed = self.log_throttle.admit(host, f"proxy_{reason}")
        if suppressed is not None:
            log.warn(
                "PROXY protocol on {listener}: closed the connection from"
                " {source}: {reason} ({suppressed} similar lines suppressed)",
                listener=listener,
                source=host,
                reason=reason,
                suppressed=suppressed,
            )


class ProxyHeaderProtocol(ProtocolWrapper):
    """Reads (trusted source) or forbids (untrusted) a PROXY header, then relays."""

    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self._buffer = b""
        self._peer: IAddress | None = None
        self._inner_connected = False
        self._awaiting_header = False
        self._checked_first = False
        self._timeout: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper would connect the wrapped protocol now; a trusted
        # source's wrapped protocol must wait for the header (its
        # connectionMade reads getPeer()).
        directlyProvides(self, providedBy(transport))
        self.connected = True
        self.transport = transport
        self.factory.registerProtocol(self)
        policy = self.factory.policy
        peer: Any = transport.getPeer()
        host = peer.host
        if policy.trusts(host):
            self._awaiting_header = True
            self._timeout = policy.clock.callLater(
                policy.header_timeout, self._header_timed_out
            )
        else:
            self._connect_inner()

    def _connect_inner(self) -> None:
        self._inner_connected = True
        me: Any = self  # the wrapper is the inner protocol's transport
        self.wrappedProtocol.makeConnection(me)

    def dataReceived(self, data: bytes) -> None:
        if self._awaiting_header:
            self._read_header(data)
            return
        if not self._checked_first:
            self._checked_first = True
            if data.startswith((SIGNATURE[:4], V1_PREFIX)):
                self._refuse("untrusted_source")
                return
        self.wrappedProtocol.dataReceived(data)

    def _read_header(self, data: bytes) -> None:
        self._buffer += data
        try:
            parsed = parse_v2(self._buffer)
        except ProxyHeaderError as e:
            self._refuse(e.reason)
            return
        if parsed is None:
            return
        size, source = parsed
        rest, self._buffer = self._buffer[size:], b""
        self._awaiting_header = False
        self._cancel_timeout()
        counters = self.factory.policy.counters
        if source is None:
            counters.proxy_headers["local"] += 1
        else:
            counters.proxy_headers["accepted"] += 1
            ip, port = source
            address_type = IPv6Address if ":" in ip else IPv4Address
            self._peer = address_type("TCP", ip, port)
        self._connect_inner()
        if rest and self.connected:
            self.wrappedProtocol.dataReceived(rest)

    def _header_timed_out(self) -> None:
        self._timeout = None
        if self._awaiting_header:
            self._refuse("timeout")

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _refuse(self, reason: str) -> None:
        self._awaiting_header = False
        self._cancel_timeout()
        transport: Any = self.transport
        self.factory.policy.refused(
            transport.getPeer().host, reason, self.factory.listener
        )
        transport.abortConnection()

    def getPeer(self) -> IAddress:
        if self._peer is not None:
            return self._peer
        transport = self.transport
        assert transport is not None  # noqa: S101 (connected)
        peer: IAddress = transport.getPeer()
        return peer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timeout()
        self.connected = False
        self.factory.unregisterProtocol(self)
        if self._inner_connected:
            self.wrappedProtocol.connectionLost(reason)


class ProxyHeaderFactory(WrappingFactory[ProxyHeaderProtocol]):
    """Wraps a listener's factory (TLS included) with PROXY v2 handling."""

    protocol = ProxyHeaderProtocol

    def __init__(
        self, wrapped: Factory[Any], policy: ProxyPolicy, listener: str
    ) -> None:
        super().__init__(wrapped)
        self.policy = policy
        self.listener = listener
