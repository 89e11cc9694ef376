"""RFC 6062 TCP relays: Connect, ConnectionBind, ConnectionAttempt, spliced data.

A TCP allocation (REQUESTED-TRANSPORT 6, only over a TCP/TLS control
connection) listens on its relayed address. A peer connection is either
made by a Connect request (outgoing, from the relay IP) or accepted on the
relayed address from a peer the allocation has a permission for (announced
with a ConnectionAttempt indication on the control connection). Either way
it gets a CONNECTION-ID and waits, not read, for the client to open a data
connection and send ConnectionBind with that id within
:data:`BIND_TIMEOUT` seconds; then the two TCP connections are spliced:
bytes go straight across, and each side is the other's streaming producer,
so a slow reader pauses the other side's reads (backpressure both ways).
When either side closes (a half-close included: Twisted reports it as the
end of the connection) the other is closed too, after the bytes already
relayed to it are written (a peer that has not taken them within
:data:`CLOSE_TIMEOUT` seconds is aborted); deleting the allocation closes its
listener (the port returns to the pool) and every connection at once.

Openers are injected (the reactor's ``listenTCP``/``connectTCP`` in the
daemon), so the rules run in unit tests without sockets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from twisted.internet.protocol import ClientFactory, Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.stun import codec
from actrix.turn.allocation import PortPool

if TYPE_CHECKING:
    from actrix.turn.allocation import Allocation

log = Logger()

BIND_TIMEOUT: Final = 30.0  # RFC 6062 §5.2/§5.3
CONNECT_TIMEOUT: Final = 30.0
CLOSE_TIMEOUT: Final = 10.0  # a peer that will not take the last bytes is aborted
MAX_PENDING_BYTES: Final = 65536  # read before ConnectionBind (should be none)
BIND_ATTEMPTS: Final = 8

TcpListen = Callable[[str, int, Factory[Any]], IListeningPort]
"""Listens on (ip, port); raises CannotListenError when taken."""
TcpConnect = Callable[[str, int, Factory[Any], str, float], None]
"""Connects to (host, port) from bind ip with a timeout; reports via the factory."""


class DataLink(Protocol):
    """A client data connection that can be spliced to a peer connection."""

    transport: Any
    address: tuple[str, int]

    def splice(self, peer: PeerConnection) -> None:
        """Become a raw byte pipe to ``peer``."""


class TcpCounters(Protocol):
    """The TURN metrics fields this module moves."""

    tcp_connections: Any  # Counter[str]: connect_ok, connect_failed, accepted, ...


class PeerConnection(TwistedProtocol):
    """One TCP connection between the relayed address and a peer."""

    transport: Any

    def __init__(
        self, relays: TcpRelays, allocation: Allocation, outgoing: bool
    ) -> None:
        self.relays = relays
        self.allocation: Allocation | None = allocation
        self.outgoing = outgoing
        self.connection_id = 0
        self.peer: tuple[str, int] = ("", 0)
        self.link: DataLink | None = None
        self._pending = b""
        self._timer: IDelayedCall | None = None
        # Connect: answer the request once connected (or failed).
        self.on_connected: Callable[[PeerConnection], None] | None = None
        self.closed = False
        self.counted = False  # in TcpRelays' live count

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = (peer.host, peer.port)
        self.transport.pauseProducing()  # nothing is read before ConnectionBind
        allocation = self.allocation
        if allocation is None or allocation.tcp is None:
            self.transport.abortConnection()
            return
        if not self.outgoing and self.peer[0] not in allocation.permissions:
            self.relays.counters.tcp_connections["refused_no_permission"] += 1
            self.transport.abortConnection()
            return
        self.relays.register(self)
        self._timer = self.relays.clock.callLater(BIND_TIMEOUT, self._bind_timed_out)
        if self.outgoing:
            self.relays.counters.tcp_connections["connect_ok"] += 1
            callback, self.on_connected = self.on_connected, None
            if callback is not None:
                callback(self)
        else:
            self.relays.counters.tcp_connections["accepted"] += 1
            self.relays.announce(self)

    def _bind_timed_out(self) -> None:
        self._timer = None
        if self.link is None:
            self.relays.counters.tcp_connections["bind_timeout"] += 1
            self.close()

    def bind(self, link: DataLink) -> None:
        """Splice with the client's data connection (ConnectionBind succeeded)."""
        self.link = link
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        link.splice(self)
        # Backpressure: each transport pauses the other's reads while full.
        self.transport.registerProducer(link.transport, True)
        link.transport.registerProducer(self.transport, True)
        if self._pending:
            link.transport.write(self._pending)
            self._pending = b""
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        link = self.link
        if link is not None:
            link.transport.write(data)
            return
        self._pending += data
        if len(self._pending) > MAX_PENDING_BYTES:
            self.close()

    def close(self) -> None:
        """Close this connection (and, once spliced, its data connection)."""
        if not self.closed:
            self.transport.abortConnection()

    def finish(self) -> None:
        """The client's data connection ended: write what it sent, then close.

        Bounded: a peer that does not read it within :data:`CLOSE_TIMEOUT`
        seconds is aborted, so it cannot hold the connection open.
        """
        if self.closed or self.transport.disconnecting:
            return
        self.transport.loseConnection()
        if self._timer is None:
            self._timer = self.relays.clock.callLater(
                CLOSE_TIMEOUT, self._close_timed_out
            )

    def _close_timed_out(self) -> None:
        self._timer = None
        self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.relays.forget(self)
        link, self.link = self.link, None
        if link is not None:
            link.transport.loseConnection()
        callback, self.on_connected = self.on_connected, None
        if callback is not None:
            callback(self)  # a Connect whose connection never came up


class _PeerFactory(Factory[PeerConnection]):
    """Accepts peer connections on one allocation's relayed address."""

    noisy = False

    def __init__(self, relays: TcpRelays, allocation: Allocation) -> None:
        self.relays = relays
        self._allocation = allocation

    def buildProtocol(self, addr: Any) -> PeerConnection:
        return PeerConnection(self.relays, self._allocation, outgoing=False)


class _ConnectFactory(ClientFactory[PeerConnection]):
    """One outgoing Connect; reports a failed attempt to its connection."""

    noisy = False

    def __init__(self, connection: PeerConnection) -> None:
        self.connection = connection

    def buildProtocol(self, addr: Any) -> PeerConnection:
        return self.connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        connection = self.connection
        callback, connection.on_connected = connection.on_connected, None
        connection.closed = True
        connection.relays.counters.tcp_connections["connect_failed"] += 1
        connection.relays.forget(connection)
        if callback is not None:
            callback(connection)


class TcpAllocation:
    """The TCP side of one allocation: its listener and its peer connections."""

    __slots__ = ("connections", "listening", "port")

    def __init__(self, listening: IListeningPort, port: int) -> None:
        self.listening = listening
        self.port = port
        self.connections: dict[int, PeerConnection] = {}


class TcpRelays:
    """Listeners, Connects and connection ids of every TCP allocation."""

    def __init__(
        self,
        clock: IReactorTime,
        pool: PortPool,
        listen: TcpListen,
        connect: TcpConnect,
        counters: TcpCounters,
        announce: Callable[[PeerConnection], None],
    ) -> None:
        self.clock = clock
        self._pool = pool
        self._listen = listen
        self._connect = connect
        self.counters = counters
        self.announce = announce
        self._by_id: dict[int, PeerConnection] = {}
        self._live = 0

    def open(self, bind_ip: str, allocation: Allocation) -> TcpAllocation | None:
        """Listen on a relay port from the pool (None when none is left)."""
        for _ in range(BIND_ATTEMPTS):
            port = self._pool.take()
            if port is None:
                break
            try:
                listening = self._listen(bind_ip, port, _PeerFactory(self, allocation))
            except CannotListenError:
                self._pool.release(port)
                continue
            return TcpAllocation(listening, port)
        return None

    def connect(
        self,
        allocation: Allocation,
        peer: tuple[str, int],
        bind_ip: str,
        answer: Callable[[PeerConnection], None],
    ) -> bool:
        """Start a Connect to ``peer``; False if one to it exists (446)."""
        tcp = allocation.tcp
        assert tcp is not None  # noqa: S101 (checked by the caller)
        if any(c.peer == peer for c in tcp.connections.values()):
            return False
        connection = PeerConnection(self, allocation, outgoing=True)
        connection.peer = peer
        connection.on_connected = answer
        # Held in the table while connecting, so a second Connect is 446.
        connection.connection_id = self._new_id()
        tcp.connections[connection.connection_id] = connection
        factory = _ConnectFactory(connection)
        self._connect(peer[0], peer[1], factory, bind_ip, CONNECT_TIMEOUT)
        return True

    def register(self, connection: PeerConnection) -> None:
        """A peer connection is up: give it an id (Connects have one already)."""
        allocation = connection.allocation
        if allocation is None or allocation.tcp is None:
            return
        if not connection.connection_id:
            connection.connection_id = self._new_id()
        self._live += 1
        connection.counted = True
        allocation.tcp.connections[connection.connection_id] = connection
        self._by_id[connection.connection_id] = connection

    def take_unbound(self, connection_id: int) -> PeerConnection | None:
        """The connection waiting for ConnectionBind with this id (then unlisted)."""
        connection = self._by_id.get(connection_id)
        if connection is None or connection.link is not None or connection.closed:
            return None
        del self._by_id[connection_id]
        return connection

    def forget(self, connection: PeerConnection) -> None:
        """A peer connection ended (or a Connect failed)."""
        if connection.counted:
            connection.counted = False
            self._live -= 1
        self._by_id.pop(connection.connection_id, None)
        allocation = connection.allocation
        if allocation is not None and allocation.tcp is not None:
            allocation.tcp.connections.pop(connection.connection_id, None)

    def close(self, allocation: Allocation) -> Any:
        """Close the allocation's listener and connections; the port comes back."""
        tcp, allocation.tcp = allocation.tcp, None
        if tcp is None:
            return None
        for connection in list(tcp.connections.values()):
            self._by_id.pop(connection.connection_id, None)
            connection.allocation = None
            connection.on_connected = None
            if connection.transport is not None:
                connection.close()
            else:
                connection.closed = True
        result = tcp.listening.stopListening()
        port = tcp.port
        if result is None:
            self._pool.release(port)
            return None
        result.addBoth(lambda _: self._pool.release(port))
        return result

    def _new_id(self) -> int:
        while True:
            connection_id = int.from_bytes(os.urandom(4), "big")
            if connection_id and connection_id not in self._by_id:
                return connection_id

    @property
    def open_count(self) -> int:
        """Peer connections alive (waiting for ConnectionBind or spliced)."""
        return self._live

    def __len__(self) -> int:
        """Connections waiting for ConnectionBind."""
        return len(self._by_id)


def connection_attempt(connection: PeerConnection) -> bytes:
    """The ConnectionAttempt indication announcing ``connection`` (RFC 6062 §4.4)."""
    txid = os.urandom(12)
    return codec.encode(
        codec.message_type(codec.METHOD_CONNECTION_ATTEMPT, codec.CLASS_INDICATION),
        txid,
        [
            (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*connection.peer, txid)),
            (codec.CONNECTION_ID, codec.encode_u32(connection.connection_id)),
        ],
    )
