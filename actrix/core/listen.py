"""Listening services that bind in ``privilegedStartService`` and raise on failure.

``strports`` covers plain TCP, but we also need UDP and TLS with a reloadable
context, so all three share one shape: bind errors propagate out of startup (so
twistd aborts with a message), ``.port`` is exposed for tests, and stopping
closes the socket.

Every accepted TCP socket of every listener (HTTP(S) site and its WebSockets,
TURN/STUN over TCP and TLS) gets ``TCP_NODELAY`` at accept: small writes
(WebSocket frames, TURN ChannelData, TLS records) must leave at once instead of
waiting up to 40 ms for a delayed ACK. It is set by :class:`AcceptingPort`'s
transport class, one ``setsockopt`` per connection, so it costs nothing per
packet, needs no protocol wrapper in the data path, and holds whatever protocol
later takes the socket over (TLS, a WebSocket upgrade). Setting it on the
listening socket would rely on inheritance, which is not portable. The same
transport class releases a connection's slot in the optional per-IP cap when
the socket closes, whichever protocol owns it by then.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IReactorFDSet, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from actrix.core.logthrottle import LogThrottle
from actrix.core.proxyproto import ProxyHeaderFactory, ProxyPolicy
from actrix.core.tls import ServerTLS

log = Logger()


class ListenError(Exception):
    """A listener could not bind; the message names the address."""


def adopted_socket(fd: int) -> socket.socket:
    """The socket of an inherited descriptor (family and type read from it).

    The socket object owns ``fd`` from then on (closing it closes ``fd``).
    """
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


class _Listener(Service):
    port: IListeningPort | None = None
    # Descriptors of sockets a worker supervisor opened for this listener
    # (actrix.workers): the listener adopts them instead of binding.
    inherited: tuple[int, ...] = ()

    def __init__(self, reactor: Any, interface: str, port_number: int) -> None:
        self._reactor = reactor
        self.interface = interface
        self.port_number = port_number

    def _bind(self) -> IListeningPort:
        raise NotImplementedError

    def _adopt(self, fds: tuple[int, ...]) -> IListeningPort:
        raise NotImplementedError

    def privilegedStartService(self) -> None:
        from twisted.internet.error import CannotListenError

        super().privilegedStartService()
        if self.inherited:
            fds, self.inherited = self.inherited, ()
            self.port = self._adopt(fds)
            return
        try:
            self.port = self._bind()
        except CannotListenError as e:
            raise ListenError(
                f"{self.name or 'listener'}: cannot listen on "
                f"{self.interface}:{self.port_number}: {e.socketError}"
            ) from e

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return Deferred.fromCoroutine(_done())
        stopped: Deferred[None] = maybeDeferred(port.stopListening)  # type: ignore[call-overload]  # IListeningPort declares no return type
        return stopped

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self.port is not None, "not listening"  # noqa: S101
        return int(self.port.getHost().port)  # type: ignore[attr-defined]  # IPv4Address/IPv6Address


async def _done() -> None:
    return None


class PerIpConnections:
    """Open connections per source IP, refused past ``cap``.

    The table holds only addresses with open connections, so it is bounded by
    the number of open sockets. Refusals are logged through a throttle.
    """

    def __init__(self, cap: int, clock: IReactorTime, name: str = "listener") -> None:
        self.cap = cap
        self.name = name
        self._open: dict[str, int] = {}
        self._throttle = LogThrottle(clock)
        self.refused = 0

    def admit(self, host: str) -> bool:
        """Take a slot for ``host``; False (and a throttled line) when it has none."""
        count = self._open.get(host, 0)
        if count >= self.cap:
            self.refused += 1
            suppressed = self._throttle.admit(host, "connection-cap")
            if suppressed is not None:
                log.warn(
                    "{listener}: refused a connection from {peer}: {cap} open"
                    " ({suppressed} more not logged)",
                    listener=self.name,
                    peer=host,
                    cap=self.cap,
                    suppressed=suppressed,
                )
            return False
        self._open[host] = count + 1
        return True

    def release(self, host: str) -> None:
        """Give back the slot of a closed connection."""
        count = self._open.get(host, 0) - 1
        if count > 0:
            self._open[host] = count
        else:
            self._open.pop(host, None)

    def open_count(self, host: str) -> int:
        return self._open.get(host, 0)


class _CappedFactory(ServerFactory[Protocol]):
    """Builds a protocol only when the peer's address has a free slot.

    It sits outside TLS, so a refused peer costs no handshake. The slot is
    released by :class:`_AcceptedConnection` when the socket closes.
    """

    def __init__(self, inner: Any, per_ip: PerIpConnections) -> None:
        self.inner = inner
        self.per_ip = per_ip

    def logPrefix(self) -> str:
        # Port log lines ("... starting on 443") name the real factory.
        prefix = getattr(self.inner, "logPrefix", None)
        return str(prefix()) if prefix is not None else type(self.inner).__name__

    def doStart(self) -> None:
        self.inner.doStart()

    def doStop(self) -> None:
        self.inner.doStop()

    def buildProtocol(self, addr: Any) -> Protocol | None:
        host = str(addr.host)
        if not self.per_ip.admit(host):
            return None
        protocol: Protocol | None = self.inner.buildProtocol(addr)
        if protocol is None:
            self.per_ip.release(host)
        return protocol


class _AcceptedConnection(tcp.Server):
    """An accepted socket: Nagle off from the start, per-IP slot freed at close."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: Any,
        client: tuple[Any, ...],
        server: tcp.Port,
        sessionno: int,
        reactor: Any,
    ) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, protocol, client, server, sessionno, reactor)
        self._per_ip: PerIpConnections | None = getattr(server, "per_ip", None)

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)
        finally:
            if self._per_ip is not None:
                self._per_ip.release(str(self.client[0]))


class AcceptingPort(tcp.Port):
    """A listening TCP port whose connections are :class:`_AcceptedConnection`."""

    transport = _AcceptedConnection

    def __init__(
        self,
        port: int,
        factory: Any,
        backlog: int,
        interface: str,
        reactor: Any,
        per_ip: PerIpConnections | None = None,
    ) -> None:
        if per_ip is not None:
            factory = _CappedFactory(factory, per_ip)
        super().__init__(port, factory, backlog, interface, reactor)
        self.per_ip = per_ip

    def adopt(self, sock: socket.socket) -> None:
        """Listen on ``sock``, a listening socket other processes share.

        Stopping closes this process's descriptor only: the socket is not
        shut down, so the other processes keep accepting on it.
        """
        self._preexistingSocket = sock
        self.startListening()


class TCPListener(_Listener):
    """A TCP (optionally TLS) listener for a protocol factory.

    ``max_per_ip`` caps the open connections of one source address (refused
    connections are closed at accept, before TLS). ``proxy`` turns on PROXY
    protocol v2 (:mod:`actrix.core.proxyproto`) for its trusted sources.
    """

    def __init__(
        self,
        reactor: Any,
        interface: str,
        port_number: int,
        factory: ServerFactory[Any],
        tls: ServerTLS | None = None,
        backlog: int = 1024,
        max_per_ip: int | None = None,
        proxy: ProxyPolicy | None = None,
    ) -> None:
        super().__init__(reactor, interface, port_number)
        self.factory = factory
        self.tls = tls
        self.proxy = proxy
        self.backlog = backlog
        self.max_per_ip = max_per_ip
        self.per_ip: PerIpConnections | None = None

    def _wrapped_factory(self) -> Any:
        factory: Any = self.factory
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, self.factory)
        if self.proxy is not None:
            # Outside TLS: the balancer's header precedes the ClientHello.
            factory = ProxyHeaderFactory(factory, self.proxy, self.name or "listener")
        return factory

    def _accepting_port(self, factory: Any, port_number: int | None) -> AcceptingPort:
        if self.max_per_ip is not None:
            self.per_ip = PerIpConnections(
                self.max_per_ip, self._reactor, self.name or "listener"
            )
        return AcceptingPort(
            port_number,  # type: ignore[arg-type]  # None: adopted, never bound
            factory,
            self.backlog,
            self.interface,
            self._reactor,
            self.per_ip,
        )

    def _adopt(self, fds: tuple[int, ...]) -> IListeningPort:
        (fd,) = fds
        port = self._accepting_port(self._wrapped_factory(), None)
        port.adopt(adopted_socket(fd))
        return port

    def _bind(self) -> IListeningPort:
        factory = self._wrapped_factory()
        reactor: Any = self._reactor
        if not IReactorFDSet.providedBy(reactor):
            # A reactor without file descriptors (a test double) has no
            # sockets to tune; its own listenTCP is all there is.
            port: IListeningPort = reactor.listenTCP(
                self.port_number,
                factory,
                backlog=self.backlog,
                interface=self.interface,
            )
            return port
        accepting = self._accepting_port(factory, self.port_number)
        accepting.startListening()
        return accepting


class UDPListener(_Listener):
    """A UDP socket for a datagram protocol."""

    def __init__(
        self,
        reactor: Any,
        interface: str,
        port_number: int,
        protocol: DatagramProtocol,
        max_packet_size: int = 65536,
    ) -> None:
        super().__init__(reactor, interface, port_number)
        self.protocol = protocol
        self.max_packet_size = max_packet_size

    def _bind(self) -> IListeningPort:
        port: IListeningPort = self._reactor.listenUDP(
            self.port_number,
            self.protocol,
            interface=self.interface,
            maxPacketSize=self.max_packet_size,
        )
        return port

    def _adopt(self, fds: tuple[int, ...]) -> IListeningPort:
        sock = adopted_socket(fds[0])
        try:
            port: IListeningPort = self._reactor.adoptDatagramPort(
                sock.fileno(), sock.family, self.protocol, self.max_packet_size
            )
        finally:
            sock.close()  # the port holds its own duplicate
        return port
