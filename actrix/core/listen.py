"""Listening services that bind in ``privilegedStartService`` and raise on failure.

``strports`` covers plain TCP, but we also need UDP and TLS with a reloadable
context, so all three share one shape: bind errors propagate out of startup (so
twistd aborts with a message), ``.port`` is exposed for tests, and stopping
closes the socket.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from actrix.core.tls import ServerTLS


class ListenError(Exception):
    """A listener could not bind; the message names the address."""


class _Listener(Service):
    port: IListeningPort | None = None

    def __init__(self, reactor: Any, interface: str, port_number: int) -> None:
        self._reactor = reactor
        self.interface = interface
        self.port_number = port_number

    def _bind(self) -> IListeningPort:
        raise NotImplementedError

    def privilegedStartService(self) -> None:
        from twisted.internet.error import CannotListenError

        super().privilegedStartService()
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


class TCPListener(_Listener):
    """A TCP (optionally TLS) listener for a protocol factory."""

    def __init__(
        self,
        reactor: Any,
        interface: str,
        port_number: int,
        factory: ServerFactory[Any],
        tls: ServerTLS | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(reactor, interface, port_number)
        self.factory = factory
        self.tls = tls
        self.backlog = backlog

    def _bind(self) -> IListeningPort:
        factory: ServerFactory[Any] | TLSMemoryBIOFactory = self.factory
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, self.factory)
        port: IListeningPort = self._reactor.listenTCP(
            self.port_number, factory, backlog=self.backlog, interface=self.interface
        )
        return port


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
