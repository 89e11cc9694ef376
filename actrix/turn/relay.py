"""The relay socket of an allocation: a lean UDP port read by the reactor.

Twisted's ``udp.Port`` logs "starting on N" and "(UDP Port N Closed)" at info
level, closes through ``callLater(0)`` and a Deferred, and keeps a log prefix
per port. A TURN server opens and closes one relay socket per allocation, so
that is two log lines and several objects per allocation for nothing.
:class:`RelaySocket` is the minimum instead: a non-blocking socket bound to
the relay address, registered with the reactor as a reader, delivering
datagrams to a :class:`~twisted.internet.protocol.DatagramProtocol`, and
closed synchronously by :meth:`RelaySocket.stopListening` (the service closes
every relay socket on shutdown; the reactor's own disconnect at exit is the
backstop).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorFDSet, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from actrix.turn.allocation import RelayOpener
from actrix.turn.datapath import RelayProtocol

log = Logger()

MAX_DATAGRAM: Final = 65535
READS_PER_EVENT: Final = 64  # then yield to other sockets; epoll reports us again


@implementer(IListeningPort, IReadDescriptor)
class RelaySocket:
    """A bound UDP socket whose datagrams go to ``protocol``; no logging."""

    __slots__ = ("_flush", "_ip", "_port", "_reactor", "_v6", "protocol", "socket")

    def __init__(
        self,
        reactor: IReactorFDSet,
        protocol: DatagramProtocol,
        ip: str,
        port: int,
    ) -> None:
        self._reactor = reactor
        self.protocol = protocol
        self._ip = ip
        self._port = port
        self._v6 = ":" in ip
        self.socket: socket.socket | None = None
        # A TURN relay's datagrams to the client leave in one batch per read.
        self._flush: Callable[[], None] | None = None
        if isinstance(protocol, RelayProtocol):
            protocol.batched = True
            self._flush = protocol.flush

    def startListening(self) -> None:
        """Bind, start reading and connect the protocol.

        Raises:
            CannotListenError: the address is taken or cannot be bound.
        """
        family = socket.AF_INET6 if self._v6 else socket.AF_INET
        # Non-blocking from the start: one system call fewer per allocation.
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            if self._v6:
                # RFC 6156: an IPv6 relay relays IPv6 only (no mapped IPv4 peers).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self._ip, self._port))
        except OSError as e:
            sock.close()
            raise CannotListenError(self._ip, self._port, e) from e
        self.socket = sock
        self._reactor.addReader(self)
        self.protocol.makeConnection(self)  # type: ignore[arg-type]  # a UDP transport

    def stopListening(self) -> None:
        """Stop reading, close the socket and stop the protocol (at once)."""
        sock = self.socket
        if sock is None:
            return
        self._reactor.removeReader(self)
        self.socket = None
        sock.close()
        self.protocol.doStop()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor is disconnecting everything (or reading failed)."""
        self.stopListening()

    def fileno(self) -> int:
        sock = self.socket
        return -1 if sock is None else sock.fileno()

    def logPrefix(self) -> str:
        return "RelaySocket"

    def getHost(self) -> IPv4Address | IPv6Address:
        if self._v6:
            return IPv6Address("UDP", self._ip, self._port)
        return IPv4Address("UDP", self._ip, self._port)

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram; errors (full buffer, unreachable) drop it."""
        sock = self.socket
        if sock is None:
            return
        try:  # noqa: SIM105 (suppress() would add a context manager per packet)
            sock.sendto(data, addr)
        except OSError:
            pass

    def doRead(self) -> None:
        """Deliver what the socket holds (bounded, so other sockets get a turn)."""
        sock = self.socket
        if sock is None:
            return
        read_datagrams(
            sock,
            self.protocol.datagramReceived,
            MAX_DATAGRAM,
            self._v6,
            READS_PER_EVENT,
            None,  # stopListening closes the socket: the next read fails
            "while relaying a datagram from a peer",
        )
        flush = self._flush
        if flush is not None:
            try:
                flush()
            except Exception:
                log.failure("while relaying datagrams from peers")


def read_datagrams(
    sock: socket.socket,
    deliver: Callable[[bytes, tuple[str, int]], None],
    size: int,
    v6: bool,
    limit: int,
    still_open: Callable[[], bool] | None,
    what: str,
) -> None:
    """Hand up to ``limit`` datagrams from ``sock`` to ``deliver``, then yield.

    The one read loop of every TURN datagram socket (relay sockets and both
    halves of the ICE port): bounded so other sockets get their turn (epoll
    reports a socket with more to read again), IPv6 addresses cut to (host,
    port), a failing handler logged without stopping the loop, and no read
    after the handler closed the socket: ``still_open`` says so, or is None
    when closing closes ``sock`` itself (a read then fails with EBADF; no
    call per datagram to find out).
    """
    recvfrom = sock.recvfrom
    for _ in range(limit):
        try:
            data, addr = recvfrom(size)
        except OSError:
            return  # EAGAIN, EBADF, or a queued ICMP error: nothing more now
        if v6:
            addr = addr[:2]  # drop flow info and scope id
        try:
            deliver(data, addr)
        except Exception:
            log.failure(what)
        if still_open is not None and not still_open():
            return


def relay_opener(reactor: IReactorFDSet) -> RelayOpener:
    """The :data:`RelayOpener` the daemon gives the TURN service."""

    def open_relay(ip: str, port: int, protocol: DatagramProtocol) -> IListeningPort:
        relay = RelaySocket(reactor, protocol, ip, port)
        relay.startListening()
        return relay

    return open_relay
