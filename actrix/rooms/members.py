"""Room members and rooms as the service holds them, and the per-request checks.

:class:`Peer` and :class:`Room` are owned and mutated by
:class:`~actrix.rooms.service.RoomService` only; a connection sees its peer as
an opaque handle. :class:`PeerSink` is what the service needs of a connection.
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

import attrs

from actrix.rooms.grants import Grant
from actrix.rooms.model import (
    INVALID_MESSAGE,
    ROLE_RECEIVER,
    ROLE_SENDER,
    UNAUTHORIZED,
    Endpoint,
    PeerInfo,
    RoomError,
    RoomView,
    Signal,
)

CLIENT_ID: Final = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class PeerSink(Protocol):
    """A member's connection, as the service sees it."""

    def peer_joined(self, room_id: str, peer: PeerInfo) -> None: ...

    def peer_left(self, room_id: str, peer_id: str) -> None: ...

    def signal(self, signal: Signal) -> bool:
        """Deliver; False when the signal cannot be carried on this wire."""
        ...

    def end(self, code: int, error: RoomError | None, replaced_by: str | None) -> None:
        """The service ends this peer: send ``error`` if any, then close."""
        ...


@attrs.define(eq=False)
class Peer:
    """One live JSON connection or connected binary session (service-owned)."""

    peer_id: str
    sink: PeerSink
    binary: bool
    last_activity: float
    grant: Grant | None = None  # binary: the CONNECT grant
    session_id: str = ""
    room: Room | None = None
    joined_at: int = 0
    display_name: str | None = None
    endpoint: Endpoint | None = None
    role: str | None = None
    metadata: Any = None
    offer_sdp: str | None = None
    capabilities: tuple[str, ...] = ()
    realm_id: int | None = None
    connect_token: str | None = attrs.field(default=None, repr=False)

    def info(self) -> PeerInfo:
        return PeerInfo(
            self.peer_id,
            self.joined_at,
            self.display_name,
            self.endpoint,
            self.role,
            self.metadata,
        )


@attrs.define(eq=False)
class Room:
    room_id: str
    realm_id: int
    max_peers: int
    created_at: int
    persistent: bool = False
    metadata: Any = None
    members: dict[str, Peer] = attrs.Factory(dict)
    empty_since: float | None = None

    def view(self) -> RoomView:
        return RoomView(
            self.room_id,
            self.realm_id,
            self.max_peers,
            self.created_at,
            self.persistent,
            tuple(p.info() for p in self.members.values()),
        )


def check_room_id(room_id: str | None) -> str:
    """§2.5 step 1 for any room name from a client."""
    if not room_id:
        raise RoomError(INVALID_MESSAGE, "room_id is required")
    if len(room_id.encode("utf-8")) > 256 or any(
        ord(c) < 32 or ord(c) == 127 for c in room_id
    ):
        raise RoomError(INVALID_MESSAGE, "invalid room_id")
    return room_id


def binary_role(role: str, offer_sdp: str | None) -> str:
    """§3.5 ``role`` (any case) and the sender's ``offer_sdp`` rule."""
    normalized = role.lower()
    if normalized not in (ROLE_SENDER, ROLE_RECEIVER):
        raise RoomError(INVALID_MESSAGE, "Invalid role: must be 'sender' or 'receiver'")
    if normalized == ROLE_SENDER and not offer_sdp:
        raise RoomError(INVALID_MESSAGE, "Offer SDP is required for sender role")
    return normalized


def check_client(peer: Peer, client_id: str) -> None:
    """A binary request acts only for its own session (§3.4, §3.5)."""
    if client_id != peer.peer_id:
        raise RoomError(UNAUTHORIZED, "client_id does not match the connected client")
