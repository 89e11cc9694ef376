"""Relay sockets of allocations: the port pool, opening, closing, reservations.

:class:`RelayPorts` hands out ports of ``turn.relay_port_range`` in random
order, opens a relay socket on one through the injected
:data:`~actrix.turn.allocation.RelayOpener` (trying another when a port is
taken), closes sockets and returns their ports, and keeps RFC 5766 §6.2
reservations: the odd port next to an even one, held for
:data:`RESERVATION_LIFETIME` seconds for the Allocate that presents its
RESERVATION-TOKEN.
"""

from __future__ import annotations

import os
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from actrix.turn.allocation import PortPool, RelayOpener
from actrix.turn.datapath import RelayProtocol
from actrix.turn.metrics import TurnMetrics

log = Logger()

BIND_ATTEMPTS: Final = 32
RESERVATION_LIFETIME: Final = 30.0  # RFC 5766 §6.2


class NoRelayPort(Exception):
    """No relay socket could be opened (508 Insufficient Capacity)."""


class Reservation:
    """A reserved relay port waiting for the Allocate with its token."""

    __slots__ = ("expires_at", "family", "port", "protocol", "relay_port")

    def __init__(
        self,
        port: int,
        relay_port: Any,
        protocol: RelayProtocol,
        expires_at: float,
        family: int,
    ) -> None:
        self.port = port
        self.relay_port = relay_port
        self.protocol = protocol
        self.expires_at = expires_at
        self.family = family


class RelayPorts:
    """Opens and closes relay sockets over the port pool; keeps reservations."""

    def __init__(
        self, port_range: tuple[int, int], open_relay: RelayOpener, metrics: TurnMetrics
    ) -> None:
        self._pool = PortPool(*port_range)
        self._open_relay = open_relay
        self._metrics = metrics
        self._reservations: dict[bytes, Reservation] = {}

    @property
    def pool(self) -> PortPool:
        """The port pool (TCP relays take their ports from it too)."""
        return self._pool

    def open(
        self, bind_ip: str, protocol: RelayProtocol, even: bool
    ) -> tuple[int, Any]:
        """(port, listening socket) from the pool.

        Raises:
            NoRelayPort: the pool is empty or no port could be bound.
        """
        for _ in range(BIND_ATTEMPTS):
            port = self._pool.take(even)
            if port is None:
                break
            try:
                return port, self._open_relay(bind_ip, port, protocol)
            except CannotListenError:
                self._pool.release(port)
        log.warn("no relay port could be opened on {ip}", ip=bind_ip)
        raise NoRelayPort(bind_ip)

    def close(self, listening: Any, port: int) -> Deferred[Any] | None:
        """Close a relay socket and return its port to the pool once closed."""
        try:
            result = listening.stopListening()
        except Exception:
            log.failure("while closing relay port {port}", port=port)
            result = None
        if not isinstance(result, Deferred):
            # A RelaySocket closes synchronously: no Deferred per allocation.
            self._pool.release(port)
            return None
        result.addBoth(lambda _: self._pool.release(port))
        return result

    def reserve(self, bind_ip: str, port: int, now: float, family: int) -> bytes | None:
        """Open ``port`` and hold it; its RESERVATION-TOKEN, or None if taken."""
        if not self._pool.take_specific(port):
            return None
        protocol = RelayProtocol(None, self._metrics)
        try:
            listening = self._open_relay(bind_ip, port, protocol)
        except CannotListenError:
            self._pool.release(port)
            return None
        token = os.urandom(8)
        self._reservations[token] = Reservation(
            port, listening, protocol, now + RESERVATION_LIFETIME, family
        )
        return token

    def claim(self, token: bytes) -> Reservation | None:
        """Take the reservation of ``token`` (None if unknown or expired)."""
        return self._reservations.pop(token, None)

    def sweep(self, now: float) -> None:
        """Close reservations nobody claimed in time."""
        for token, reservation in list(self._reservations.items()):
            if reservation.expires_at <= now:
                self._drop(token)

    def close_all(self) -> list[Deferred[Any] | None]:
        """Close every reservation (shutdown)."""
        return [self._drop(token) for token in list(self._reservations)]

    def _drop(self, token: bytes) -> Deferred[Any] | None:
        reservation = self._reservations.pop(token)
        return self.close(reservation.relay_port, reservation.port)
