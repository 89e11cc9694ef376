"""One TURN allocation, the client links, and the relay port pool.

An :class:`Allocation` is small (``__slots__``; permissions and channels in
plain dicts) because a server holds tens of thousands; its relay socket is a
UDP port opened through an injected :data:`RelayOpener` (a quiet
:class:`~actrix.turn.relay.RelaySocket` in the daemon, fakes in unit tests)
and read by a :class:`~actrix.turn.datapath.RelayProtocol`. What may be
relayed is decided in :mod:`actrix.turn.datapath` only.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

if TYPE_CHECKING:
    from actrix.turn.bandwidth import Meter
    from actrix.turn.datapath import RelayProtocol
    from actrix.turn.gso import BatchSender
    from actrix.turn.tcprelay import TcpAllocation

PERMISSION_LIFETIME: Final = 300.0  # RFC 5766 §8
CHANNEL_LIFETIME: Final = 600.0  # RFC 5766 §11

RelayOpener = Callable[[str, int, DatagramProtocol], IListeningPort]
"""Opens a UDP relay socket on (ip, port); raises CannotListenError when taken."""


class ClientLink(Protocol):
    """How the service reaches the client of an allocation (UDP or TCP/TLS)."""

    @property
    def transport_name(self) -> str:
        """``udp``, ``tcp`` or ``tls``."""

    @property
    def pad(self) -> bool:
        """ChannelData is padded to 4 bytes (stream transports, RFC 5766 §11.5)."""

    @property
    def address(self) -> tuple[str, int]:
        """The client's transport address."""

    @property
    def allocation_key(self) -> Any:
        """The key of this client's 5-tuple in ``TurnService.allocations``."""

    def send(self, data: bytes) -> None:
        """Send a STUN response; always written."""

    def deliver(self, data: bytes) -> None:
        """Send relayed data (ChannelData, Data indication) from a peer.

        A stream link drops it while its write buffer is full, as UDP would:
        a peer must not make us buffer without bound for a slow client.
        """

    def deliver_batch(self, frames: list[bytes]) -> None:
        """:meth:`deliver` each of ``frames``, in order, in as few writes as it can.

        What one relay socket read at once (see ``RelayProtocol.flush``).
        """

    def allocation_deleted(self) -> None:
        """The service deleted this client's allocation (stream idle bound)."""


Sender = Callable[[bytes, Any], Any]
"""Writes one datagram; may raise :class:`OSError` (full buffer, unreachable),
which every caller catches and treats as a dropped datagram, as UDP would."""


def fast_sender(transport: Any) -> Sender:
    """The transport socket's own ``sendto``, or ``transport.write`` for fakes.

    Twisted's ``udp.Port.write`` re-parses the address on every call; our
    addresses come from ``recvfrom`` or a decoded attribute, so the hot paths
    call the socket's built-in method directly (no Python frame in between)
    and catch its :class:`OSError` themselves.
    """
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket):
        write: Sender = transport.write
        return write
    sendto: Sender = sock.sendto
    return sendto


class UdpLink:
    """A UDP client: replies go out of the ICE socket to the client's address."""

    __slots__ = ("address", "allocation_key", "batch", "sendto")

    transport_name: Final = "udp"
    pad: Final = False

    def __init__(
        self,
        sendto: Sender,
        address: tuple[str, int],
        batch: BatchSender | None = None,
    ) -> None:
        self.sendto = sendto
        self.address = address
        self.allocation_key = address
        self.batch = batch  # UDP GSO on the ICE socket (None: one sendto each)

    def send(self, data: bytes) -> None:
        try:  # noqa: SIM105 (suppress() would add a context manager per packet)
            self.sendto(data, self.address)
        except OSError:
            pass

    def deliver(self, data: bytes) -> None:
        try:  # noqa: SIM105
            self.sendto(data, self.address)
        except OSError:
            pass

    def deliver_batch(self, frames: list[bytes]) -> None:
        batch = self.batch
        if batch is not None:
            batch.send(frames, self.address)
            return
        for frame in frames:
            self.deliver(frame)

    def allocation_deleted(self) -> None:
        """Nothing to do: a UDP client holds no connection."""


class Allocation:
    """A relayed transport address held for one client 5-tuple."""

    __slots__ = (
        "address_error",
        "channel_expiry",
        "channels",
        "created_at",
        "denied_logged",
        "expires_at",
        "family",
        "link",
        "meter",
        "peer_channels",
        "permissions",
        "principal",
        "relay",
        "relay6",
        "relay_address",
        "relay_port",
        "tcp",
        "transaction_id",
        "username",
    )

    def __init__(
        self,
        link: ClientLink,
        username: str,
        principal: str,
        relay_address: tuple[str, int],
        family: int,
        expires_at: float,
        transaction_id: bytes,
    ) -> None:
        self.link = link
        self.username = username
        self.principal = principal
        self.relay_address = relay_address
        self.family = family
        self.expires_at = expires_at
        self.transaction_id = transaction_id
        self.permissions: dict[str, float] = {}
        self.channels: dict[int, tuple[str, int]] = {}
        self.channel_expiry: dict[int, float] = {}
        self.peer_channels: dict[tuple[str, int], int] = {}
        self.relay: RelayProtocol | None = None
        self.relay_port: IListeningPort | None = None
        self.denied_logged: set[str] | None = None
        # Bandwidth caps and traffic counts (None: neither is configured).
        self.created_at = 0.0  # set by the allocator
        self.meter: Meter | None = None
        # RFC 8656 dual-stack: the IPv6 relay next to the IPv4 one, or the
        # ADDRESS-ERROR-CODE given when it could not be made (0: none).
        self.relay6: SecondRelay | None = None
        self.address_error = 0
        self.tcp: TcpAllocation | None = None  # RFC 6062 TCP relay

    def relay_for(self, peer_ip: str) -> RelayProtocol | None:
        """The relay socket that reaches ``peer_ip`` (the IPv6 one of a dual)."""
        second = self.relay6
        if second is not None and ":" in peer_ip:
            return second.protocol
        return self.relay

    def holds_family(self, family: int) -> bool:
        """Whether one of the relayed addresses is of ``family``."""
        return self.family == family or (
            self.relay6 is not None and family == 0x02  # IPv6
        )

    def send_to_peer(self, payload: bytes, peer: tuple[str, int]) -> None:
        """Write one datagram out of the relay socket (permission already checked)."""
        relay = self.relay_for(peer[0])
        if relay is not None:
            try:  # noqa: SIM105
                relay.sendto(payload, peer)
            except OSError:
                pass

    def expire(self, now: float) -> None:
        """Drop permissions and channel bindings whose time has passed."""
        permissions = self.permissions
        for ip in [ip for ip, until in permissions.items() if until <= now]:
            del permissions[ip]
        expiry = self.channel_expiry
        for number in [n for n, until in expiry.items() if until <= now]:
            del expiry[number]
            peer = self.channels.pop(number)
            self.peer_channels.pop(peer, None)


class SecondRelay:
    """The IPv6 relayed address of an RFC 8656 dual-stack allocation."""

    __slots__ = ("address", "listening", "protocol")

    def __init__(
        self,
        protocol: RelayProtocol,
        listening: IListeningPort,
        address: tuple[str, int],
    ) -> None:
        self.protocol = protocol
        self.listening = listening
        self.address = address


def drop_datagram(data: bytes, address: Any) -> None:
    """The relay socket is closed: drop."""


class PortPool:
    """Relay ports of ``turn.relay_port_range``, handed out in random order."""

    def __init__(self, start: int, end: int, rng: random.Random | None = None) -> None:
        ports = list(range(start, end + 1))
        (rng or random.SystemRandom()).shuffle(ports)
        self._free: deque[int] = deque(ports)
        self.start = start
        self.end = end

    def take(self, even: bool = False) -> int | None:
        """A free port (even when asked), or None when none is left."""
        free = self._free
        for _ in range(len(free)):
            port = free.popleft()
            if not even or port % 2 == 0:
                return port
            free.append(port)
        return None

    def take_specific(self, port: int) -> bool:
        """Claim ``port`` if it is free (the odd half of an EVEN-PORT pair)."""
        try:
            self._free.remove(port)
        except ValueError:
            return False
        return True

    def release(self, port: int) -> None:
        """Return a port; it is reused last."""
        if self.start <= port <= self.end:
            self._free.append(port)

    def __len__(self) -> int:
        return len(self._free)
