"""What the admin API needs of the other services, as small protocols.

The admin package imports no service package (STYLE.md §1): ``tap.py`` hands
it the room service, the TURN allocation table and a revoker, each matching a
protocol here structurally. ``None`` for a service that does not run here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actrix.proto import actr_pb2


class RevokeResultLike(Protocol):
    """What a revocation did (``actrix.core.revocation.RevokeResult``)."""

    @property
    def sockets_closed(self) -> int: ...

    @property
    def allocations_terminated(self) -> int: ...

    @property
    def room_peers_removed(self) -> int: ...


class Revoker(Protocol):
    """Throws an actor, or every actor and room peer of a realm, out everywhere."""

    async def revoke_actor(
        self, actr_id: actr_pb2.ActrId, reason: str
    ) -> RevokeResultLike:
        """Close the actor's sockets, drop its allocations, refuse its token."""
        ...

    async def suspend_realm(self, realm_id: int, reason: str) -> RevokeResultLike:
        """Called after the realm row is Suspended: end everything in it."""
        ...


class PeerLike(Protocol):
    """A room member as :class:`actrix.rooms.members.Peer` shows it."""

    @property
    def peer_id(self) -> str: ...

    @property
    def binary(self) -> bool: ...

    @property
    def joined_at(self) -> int: ...

    @property
    def display_name(self) -> str | None: ...

    @property
    def role(self) -> str | None: ...


class RoomLike(Protocol):
    """A room as :class:`actrix.rooms.members.Room` shows it."""

    @property
    def room_id(self) -> str: ...

    @property
    def realm_id(self) -> int: ...

    @property
    def max_peers(self) -> int: ...

    @property
    def created_at(self) -> int: ...

    @property
    def persistent(self) -> bool: ...

    @property
    def members(self) -> Mapping[str, Any]: ...


class SessionLike(Protocol):
    """A signaling socket as the admin API reads it."""

    @property
    def opened_at(self) -> float: ...

    @property
    def ip(self) -> str: ...


class SignalingControl(Protocol):
    """The signaling service's admin surface: the sockets this process holds."""

    def session_for(self, key: tuple[int, int]) -> SessionLike | None:
        """The live socket of an actor (realm id, serial) held here, if any."""
        ...


class RoomControl(Protocol):
    """The room service's admin surface."""

    def rooms(self) -> Iterator[Any]:
        """Every live room (:class:`RoomLike`)."""
        ...

    def room(self, room_id: str) -> Any:
        """The room (:class:`RoomLike`) or None."""
        ...

    def close_room(self, room_id: str) -> bool:
        """End every member (close 4000) and drop the room; False if unknown."""
        ...

    def kick(self, room_id: str, peer_id: str) -> bool:
        """End one member's connection; False if it is not in the room."""
        ...

    def peer_remote(self, peer: Any) -> str | None:
        """The member's ``ip:port`` if its connection knows it."""
        ...


class TurnControl(Protocol):
    """The TURN service's admin surface."""

    @property
    def allocations(self) -> Mapping[Any, Any]:
        """The allocation table (read only)."""
        ...

    def terminate(self, allocation: Any) -> None:
        """Delete an allocation now (relay socket closed, port released)."""
        ...
