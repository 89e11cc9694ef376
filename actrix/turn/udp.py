"""The ICE UDP port of a TURN server: requests and relayed data on separate queues.

Defect 8: with one socket, a flood of Binding requests fills the kernel's
receive buffer and the kernel drops whatever arrives next, relayed
ChannelData included (51 % loss at ~270 000 Bindings/s). However cheaply we
drop a request once it is read, a busy or descheduled process cannot drain
a flood that fast. So :class:`IcePort` binds two sockets to the ICE address
with ``SO_REUSEPORT`` and attaches a four-instruction classic BPF program to
the group that steers datagrams by their first byte: ChannelData (0x40 and
up) to the *data* socket, STUN (below 0x40) to Twisted's ``udp.Port``
socket. A flood then overflows only the STUN socket's buffer. Both sockets
deliver to the same protocol and answer from the same address and port.

The STUN socket is read at most :data:`STUN_READS_PER_TURN` datagrams per
reactor turn (Twisted's ``udp.Port`` reads up to 256 KB, i.e. ~13 000
Bindings, before anything else runs), so the data socket and the relay
sockets get their turn within about a millisecond during a flood.

Where ``SO_REUSEPORT`` or the BPF program is not available, the port is a
plain ``udp.Port`` (one socket, as before); nothing else changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
from collections.abc import Callable
from typing import Final

from twisted.internet import udp
from twisted.internet.interfaces import IListeningPort, IReactorFDSet, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from actrix.core.listen import UDPListener, adopted_socket
from actrix.turn.relay import read_datagrams

log = Logger()

STUN_READS_PER_TURN: Final = 256
DATA_READS_PER_TURN: Final = 256
MAX_DATAGRAM: Final = 65535
SO_ATTACH_REUSEPORT_CBPF: Final = 51  # Linux >= 4.5 (not in the socket module)

# struct sock_filter; the index a BPF program returns picks the socket, in
# the order the sockets joined the group: 0 is udp.Port's, 1 the data one.
_BPF_LD_B_ABS: Final = 0x30
_BPF_JGE_K: Final = 0x35
_BPF_RET_K: Final = 0x06
STUN_INDEX: Final = 0
DATA_INDEX: Final = 1


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def attach_steering(sock: socket.socket) -> None:
    """Attach the first-byte steering program to ``sock``'s reuseport group.

    The program sees the UDP payload: byte 0 >= 0x40 → DATA_INDEX, else (or
    an empty datagram) → STUN_INDEX.

    Raises:
        OSError: the kernel refused it.
    """
    program = (_SockFilter * 4)(
        _SockFilter(_BPF_LD_B_ABS, 0, 0, 0),
        _SockFilter(_BPF_JGE_K, 0, 1, 0x40),
        _SockFilter(_BPF_RET_K, 0, 0, DATA_INDEX),
        _SockFilter(_BPF_RET_K, 0, 0, STUN_INDEX),
    )
    fprog = _SockFprog(len(program), program)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


@implementer(IReadDescriptor)
class _DataSocket:
    """The second socket of the group: reads ChannelData for the same protocol."""

    def __init__(
        self, reactor: IReactorFDSet, sock: socket.socket, protocol: DatagramProtocol
    ) -> None:
        self._reactor = reactor
        self.socket: socket.socket | None = sock
        # TurnUdpProtocol's steered_data skips its first-byte dispatch: only
        # ChannelData reaches this socket.
        self._deliver: Callable[[bytes, tuple[str, int]], None] = getattr(
            protocol, "steered_data", protocol.datagramReceived
        )
        self._v6 = sock.family == socket.AF_INET6

    def fileno(self) -> int:
        sock = self.socket
        return -1 if sock is None else sock.fileno()

    def logPrefix(self) -> str:
        return "IceDataSocket"

    def doRead(self) -> None:
        sock = self.socket
        if sock is None:
            return
        read_datagrams(
            sock,
            self._deliver,
            MAX_DATAGRAM,
            self._v6,
            DATA_READS_PER_TURN,
            None,  # close() closes the socket: the next read fails
            "while handling a datagram",
        )

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def close(self) -> None:
        sock, self.socket = self.socket, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.close()


class IcePort(udp.Port):
    """Twisted's UDP port plus a ChannelData socket on the same address."""

    data_socket: _DataSocket | None = None
    # Set by IceUDPListener in a worker: the group's data socket, opened by the
    # supervisor (actrix.workers) along with the STUN socket.
    inherited_data: socket.socket | None = None

    def createInternetSocket(self) -> socket.socket:
        sock: socket.socket = super().createInternetSocket()
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    def startListening(self) -> None:
        super().startListening()
        inherited, self.inherited_data = self.inherited_data, None
        if inherited is not None:
            self.data_socket = _DataSocket(self.reactor, inherited, self.protocol)
            self.reactor.addReader(self.data_socket)
            return
        try:
            self.data_socket = self._open_data_socket()
        except OSError as e:
            log.warn(
                "ICE UDP port {port}: one socket only ({error}); a request"
                " flood can crowd out relayed data",
                port=self._realPortNumber,
                error=e,
            )

    def _open_data_socket(self) -> _DataSocket:
        family = self.socket.family
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                v6only = self.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            sock.setblocking(False)
            sock.bind(self.socket.getsockname())
            attach_steering(sock)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                size = self.socket.getsockopt(socket.SOL_SOCKET, option)
                sock.setsockopt(socket.SOL_SOCKET, option, size)
        except Exception:
            sock.close()
            raise
        data = _DataSocket(self.reactor, sock, self.protocol)
        self.reactor.addReader(data)
        return data

    def doRead(self) -> None:
        """At most STUN_READS_PER_TURN datagrams, then other sockets' turn."""
        sock = self.socket
        read_datagrams(
            sock,
            self.protocol.datagramReceived,
            self.maxPacketSize,
            self.addressFamily == socket.AF_INET6,
            STUN_READS_PER_TURN,
            lambda: bool(self.connected),  # the protocol may stop the port
            "while handling a datagram",
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        data, self.data_socket = self.data_socket, None
        if data is not None:
            data.close()
        super().connectionLost(reason)


class IceUDPListener(UDPListener):
    """:class:`~actrix.core.listen.UDPListener` binding an :class:`IcePort`."""

    def _bind(self) -> IListeningPort:
        port = IcePort(
            self.port_number,
            self.protocol,
            interface=self.interface,
            maxPacketSize=self.max_packet_size,
            reactor=self._reactor,
        )
        port.startListening()
        listening: IListeningPort = port
        return listening

    def _adopt(self, fds: tuple[int, ...]) -> IListeningPort:
        """The STUN socket and (when the kernel steers) the data socket."""
        sockets = [adopted_socket(fd) for fd in fds]
        port = IcePort(
            None,
            self.protocol,
            interface=self.interface,
            maxPacketSize=self.max_packet_size,
            reactor=self._reactor,
        )
        port._preexistingSocket = sockets[0]  # type: ignore[assignment]  # declared None in Twisted
        if len(sockets) > 1:
            port.inherited_data = sockets[1]
        port.startListening()
        listening: IListeningPort = port
        return listening


def open_ice_sockets(interface: str, port: int) -> list[socket.socket]:
    """The ICE UDP socket group a worker supervisor hands to its TURN worker.

    The same two sockets :class:`IcePort` binds (STUN first, so it is index 0
    of the reuseport group, then the data socket with the steering program),
    or only the first where the kernel refuses the program.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(2):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            address = sockets[0].getsockname() if len(sockets) > 1 else None
            sock.bind(address or (interface, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    try:
        attach_steering(sockets[1])
    except OSError as e:
        log.warn("ICE UDP port: one socket only ({error})", error=e)
        sockets.pop().close()
    return sockets
