"""RoomService: rooms inside realms, their members and the rules of both protocols.

Codec-agnostic: a member's connection is a :class:`PeerSink` that encodes what
the service hands it (PeerInfo, Signal) for its own wire, so a JSON peer and a
binary peer share one room. Every request either succeeds or raises
:class:`~actrix.rooms.model.RoomError`; nothing here touches a socket or SQL.
The clock is injected; :meth:`RoomService.sweep` (stale peers, empty rooms, use
counts) and :meth:`RoomService.check_realms` run from timers.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.ice import IceServerSource
from actrix.core.settings import RoomsConfig
from actrix.rooms.grants import Authorizer, Grant, refusal
from actrix.rooms.members import (
    CLIENT_ID,
    Peer,
    PeerSink,
    Room,
    binary_role,
    check_room_id,
)
from actrix.rooms.model import (
    ALREADY_IN_ROOM,
    INVALID_MESSAGE,
    NOT_IN_ROOM,
    OFFER,
    PEER_NOT_FOUND,
    ROLE_RECEIVER,
    ROLE_SENDER,
    ROOM_FULL,
    ROOM_NOT_FOUND,
    ConnectResult,
    Endpoint,
    JoinResult,
    PeerInfo,
    RoomError,
    Signal,
    SignalData,
)

log = Logger()

CLOSE_GOING_AWAY: Final = 1001
CLOSE_REPLACED: Final = 4001
CLOSE_REALM_INACTIVE: Final = 4003
CLOSE_BY_OPERATOR: Final = 4008  # the admin API closed the room or kicked the peer


class RoomService:
    """Rooms and members of both protocols; see the module docstring."""

    def __init__(
        self,
        config: RoomsConfig,
        clock: IReactorTime,
        authorizer: Authorizer,
        ice: IceServerSource | None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.authorizer = authorizer
        self._ice = ice
        self._peers: dict[str, Peer] = {}
        self._rooms: dict[str, Room] = {}

    # ----------------------------------------------------------------- helpers

    def _ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _ice_servers(self, peer_id: str, exp: int | None) -> list[dict[str, Any]]:
        if self._ice is None:
            return []
        expiry = int(self._clock.seconds()) + self.config.ice_ttl
        if exp is not None:
            expiry = min(expiry, exp)
        return self._ice.servers(peer_id, expiry)

    def first_stun_url(self) -> str | None:
        return None if self._ice is None else self._ice.first_stun_url()

    def touch(self, peer: Peer) -> None:
        peer.last_activity = self._clock.seconds()

    def peer(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def rooms(self) -> Iterator[Room]:
        return iter(self._rooms.values())

    def room(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    # ------------------------------------------------------ connection lifetime

    def open_json(self, sink: PeerSink) -> Peer:
        """A new JSON connection with a fresh 8-hex peer id (§2.1)."""
        while True:
            peer_id = secrets.token_bytes(4).hex()
            if peer_id not in self._peers:
                break
        peer = Peer(peer_id, sink, False, self._clock.seconds())
        self._peers[peer_id] = peer
        return peer

    def close_peer(self, peer: Peer) -> None:
        """The connection or session is gone: leave its room, free its id."""
        self._leave_room(peer)
        if self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]

    # ------------------------------------------------------------- JSON rules

    def join(
        self,
        peer: Peer,
        room_id: str | None,
        *,
        token: str | None = None,
        role: str | None = None,
        display_name: str | None = None,
        endpoint: Endpoint | None = None,
        metadata: Any = None,
        ack: Callable[[JoinResult], None],
    ) -> None:
        """JSON JOIN (§2.5): checks in order, then move, ACK via ``ack``, announce."""
        room_id = check_room_id(room_id)
        current = peer.room
        if current is not None and current.room_id == room_id:
            raise RoomError(ALREADY_IN_ROOM, "already in this room")
        grant = self.authorizer.check(token, room=room_id, role=role, count=True)
        room = self._room_for_join(room_id, grant.realm_id, create=True)
        if len(room.members) >= room.max_peers > 0:
            raise RoomError(
                ROOM_FULL, f"room {room_id} is full (max {room.max_peers} peers)"
            )
        self._install(room)
        self.authorizer.count_use(grant)
        self._leave_room(peer)
        if grant.peer is not None:
            display_name = grant.peer
        peer.display_name = display_name
        peer.endpoint = endpoint
        peer.metadata = metadata
        peer.role = role or (grant.role if grant.role != "any" else None)
        peer.realm_id = grant.realm_id
        self._enter(peer, room, grant.exp, ack)

    def _room_for_join(self, room_id: str, realm_id: int, *, create: bool) -> Room:
        room = self._rooms.get(room_id)
        if room is not None:
            if room.realm_id != realm_id:
                raise refusal("wrong_realm")
            return room
        if not create:
            raise RoomError(
                ROOM_NOT_FOUND, "room not found", binary_message="Room not found"
            )
        if len(self._rooms) >= self.config.max_rooms:
            raise RoomError(ROOM_FULL, "room limit reached", "max_rooms")
        return Room(room_id, realm_id, self.config.default_max_peers, self._ms())

    def _install(self, room: Room) -> None:
        if room.room_id not in self._rooms:
            self._rooms[room.room_id] = room
            log.debug(
                "room {room} created in realm {realm}",
                room=room.room_id,
                realm=room.realm_id,
            )

    def _enter(
        self,
        peer: Peer,
        room: Room,
        exp: int | None,
        ack: Callable[[JoinResult], None],
    ) -> None:
        peer.room = room
        peer.joined_at = self._ms()
        room.members[peer.peer_id] = peer
        room.empty_since = None
        ack(
            JoinResult(
                room.room_id,
                room.realm_id,
                tuple(p.info() for p in room.members.values()),
                self._ice_servers(peer.peer_id, exp),
                room.created_at,
            )
        )
        info = peer.info()
        for other in list(room.members.values()):
            if other is not peer:
                other.sink.peer_joined(room.room_id, info)
        self._deliver_offers(peer, room)

    def _deliver_offers(self, joiner: Peer, room: Room) -> None:
        """§3.5: a sender's create/join offer reaches every receiver member."""
        if joiner.offer_sdp is not None and joiner.role == ROLE_SENDER:
            for other in list(room.members.values()):
                if other is not joiner and other.role == ROLE_RECEIVER:
                    self._send_offer(joiner, other)
        elif joiner.role == ROLE_RECEIVER:
            for other in list(room.members.values()):
                if other.offer_sdp is not None and other.role == ROLE_SENDER:
                    self._send_offer(other, joiner)

    def _send_offer(self, sender: Peer, receiver: Peer) -> None:
        assert sender.offer_sdp is not None  # noqa: S101 (checked by the caller)
        receiver.sink.signal(
            Signal(
                OFFER,
                sender.peer_id,
                receiver.peer_id,
                SignalData(text=sender.offer_sdp),
            )
        )

    def _leave_room(self, peer: Peer) -> str | None:
        room = peer.room
        if room is None:
            return None
        peer.room = None
        peer.offer_sdp = None
        room.members.pop(peer.peer_id, None)
        if not room.members:
            room.empty_since = self._clock.seconds()
        for other in list(room.members.values()):
            other.sink.peer_left(room.room_id, peer.peer_id)
        return room.room_id

    def leave(self, peer: Peer) -> None:
        """JSON LEAVE."""
        if peer.room is None:
            raise RoomError(NOT_IN_ROOM, "not in any room")
        self._leave_room(peer)

    def discover(
        self, peer: Peer, room_id: str | None, token: str | None
    ) -> tuple[str, tuple[PeerInfo, ...]]:
        """JSON DISCOVER (§2.5)."""
        if not room_id:
            if peer.room is None:
                raise RoomError(NOT_IN_ROOM, "no room specified and not in any room")
            room = peer.room
        else:
            found = self._rooms.get(room_id)
            if found is None:
                raise RoomError(ROOM_NOT_FOUND, "room not found")
            room = found
            if room is not peer.room:
                self._check_foreign(room, token)
        return room.room_id, tuple(p.info() for p in room.members.values())

    def _check_foreign(self, room: Room, token: str | None) -> None:
        auth = self.authorizer
        if (
            not token
            and auth.allow_anonymous
            and room.realm_id == auth.anonymous_realm_id
        ):
            return
        if not token:
            raise refusal("token_required")
        grant = auth.check(token, room=room.room_id)
        if grant.realm_id != room.realm_id:
            raise refusal("wrong_realm")

    def relay(self, peer: Peer, signal: Signal) -> None:
        """OFFER/ANSWER/CANDIDATE (§2.4 JSON, §3.5 binary) to ``signal.target``."""
        room = peer.room
        target: Peer | None = None
        if room is not None:
            target = room.members.get(signal.target)
        if target is None and peer.binary:
            other = self._peers.get(signal.target)
            if other is not None and other.binary and other.realm_id == peer.realm_id:
                target = other
        if target is None:
            if room is None and not peer.binary:
                raise RoomError(NOT_IN_ROOM, "not in any room")
            raise RoomError(
                PEER_NOT_FOUND,
                "target peer not found",
                binary_message="Target client not found",
            )
        if not target.sink.signal(signal):
            raise RoomError(
                INVALID_MESSAGE, "message too large for target", "frame_too_large"
            )

    # ----------------------------------------------------------- binary rules

    def connect(
        self,
        sink: PeerSink,
        client_id: str,
        auth_token: str,
        capabilities: tuple[str, ...],
    ) -> tuple[Peer, ConnectResult]:
        """Binary CONNECT (§3.4); the socket's previous state is the caller's."""
        if not CLIENT_ID.match(client_id):
            raise RoomError(INVALID_MESSAGE, "invalid client_id")
        grant = self.authorizer.check(auth_token, client_id=client_id)
        holder = self._peers.get(client_id)
        if holder is not None:
            both_anonymous = grant.anonymous and (
                holder.grant is not None and holder.grant.anonymous
            )
            if grant.peer == client_id or both_anonymous:
                self.close_peer(holder)
                holder.sink.end(CLOSE_REPLACED, None, client_id)
            else:
                raise RoomError(
                    ALREADY_IN_ROOM, "client_id already connected", binary_code=9
                )
        session_id = str(uuid.uuid4())
        peer = Peer(client_id, sink, True, self._clock.seconds(), grant, session_id)
        peer.realm_id = grant.realm_id
        peer.display_name = grant.peer
        peer.capabilities = capabilities
        peer.connect_token = auth_token if not grant.anonymous else None
        self._peers[client_id] = peer
        return peer, ConnectResult(
            session_id, self._ice_servers(client_id, grant.exp), grant.exp
        )

    def _room_grant(
        self, peer: Peer, auth_token: str, room_id: str, role: str
    ) -> Grant:
        if auth_token.startswith("rt1."):
            grant = self.authorizer.check(
                auth_token, room=room_id, role=role, count=True
            )
        elif peer.grant is not None and not peer.grant.anonymous:
            grant = self.authorizer.check(
                peer.connect_token, room=room_id, role=role, count=True
            )
        else:
            grant = self.authorizer.check(None)
        if grant.realm_id != peer.realm_id:
            raise refusal("wrong_realm")
        return grant

    def room_create(
        self,
        peer: Peer,
        room_id: str | None,
        auth_token: str,
        role: str,
        offer_sdp: str | None,
        metadata: Any,
        ack: Callable[[JoinResult], None],
    ) -> None:
        """ROOM_CREATE (§3.5): a new room (named or UUID) that the creator joins."""
        role = binary_role(role, offer_sdp)
        name = check_room_id(room_id) if room_id is not None else str(uuid.uuid4())
        grant = self._room_grant(peer, auth_token, name, role)
        if name in self._rooms:
            raise RoomError(
                ALREADY_IN_ROOM,
                "room already exists",
                binary_code=9,
                binary_message="Room already exists",
            )
        room = self._room_for_join(name, grant.realm_id, create=True)
        self._install(room)
        self._admit_binary(peer, room, grant, role, offer_sdp, metadata, ack)

    def room_join(
        self,
        peer: Peer,
        room_id: str,
        auth_token: str,
        role: str,
        offer_sdp: str | None,
        metadata: Any,
        ack: Callable[[JoinResult], None],
    ) -> None:
        """ROOM_JOIN (§3.5)."""
        role = binary_role(role, offer_sdp)
        room_id = check_room_id(room_id)
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomError(
                ROOM_NOT_FOUND, "room not found", binary_message="Room not found"
            )
        if room.members.get(peer.peer_id) is peer:
            raise RoomError(
                ALREADY_IN_ROOM,
                "already in this room",
                binary_message="Client already in room",
            )
        grant = self._room_grant(peer, auth_token, room_id, role)
        if room.realm_id != grant.realm_id:
            raise refusal("wrong_realm")
        if len(room.members) >= room.max_peers > 0:
            raise RoomError(
                ROOM_FULL,
                f"room {room_id} is full (max {room.max_peers} peers)",
                binary_message="Room is full",
            )
        self._admit_binary(peer, room, grant, role, offer_sdp, metadata, ack)

    def _admit_binary(
        self,
        peer: Peer,
        room: Room,
        grant: Grant,
        role: str,
        offer_sdp: str | None,
        metadata: Any,
        ack: Callable[[JoinResult], None],
    ) -> None:
        self.authorizer.count_use(grant)
        self._leave_room(peer)
        peer.role = role
        peer.metadata = metadata
        peer.offer_sdp = offer_sdp if role == ROLE_SENDER else None
        expiry = peer.grant.exp if peer.grant is not None else None
        self._enter(peer, room, expiry, ack)

    def room_leave(self, peer: Peer, room_id: str) -> None:
        """ROOM_LEAVE (§3.5)."""
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomError(
                ROOM_NOT_FOUND, "room not found", binary_message="Room not found"
            )
        if peer.room is not room:
            raise RoomError(
                NOT_IN_ROOM,
                "not in any room",
                binary_message="Client is not in the specified room",
            )
        self._leave_room(peer)

    # ------------------------------------------------------------ maintenance

    def add_persistent(
        self,
        room_id: str,
        realm_id: int,
        max_peers: int,
        metadata: Any,
        created_at: int,
    ) -> None:
        """A configured room: exists from startup and is never dropped."""
        self._rooms[room_id] = Room(
            room_id,
            realm_id,
            max_peers,
            created_at,
            persistent=True,
            metadata=metadata,
            empty_since=self._clock.seconds(),
        )

    def sweep(self) -> None:
        """Remove stale peers (PEER_LEFT, close 1001), empty rooms past their TTL
        and expired use counts."""
        now = self._clock.seconds()
        cutoff = now - self.config.stale_timeout
        for peer in [p for p in self._peers.values() if p.last_activity < cutoff]:
            log.info("peer {peer} stale; removing", peer=peer.peer_id)
            self.close_peer(peer)
            peer.sink.end(CLOSE_GOING_AWAY, None, None)
        ttl = self.config.empty_room_ttl
        for room in [
            r
            for r in self._rooms.values()
            if not r.persistent
            and not r.members
            and r.empty_since is not None
            and now - r.empty_since >= ttl
        ]:
            del self._rooms[room.room_id]
        self.authorizer.sweep()

    def check_realms(self) -> None:
        """End every member and session of a realm that is no longer active (4003)."""
        inactive: dict[int, bool] = {}
        for peer in list(self._peers.values()):
            realm_id = peer.realm_id
            if realm_id is None:
                continue
            if realm_id not in inactive:
                inactive[realm_id] = not self.authorizer.realm_active(realm_id)
            if inactive[realm_id]:
                self._end_inactive(peer)

    def count_realm(self, realm_id: int) -> int:
        """How many peers (members and sessions) were admitted into ``realm_id``."""
        return sum(1 for p in self._peers.values() if p.realm_id == realm_id)

    def end_realm(self, realm_id: int) -> int:
        """End every peer of ``realm_id`` now (4003), whatever the realm cache
        says yet (a suspension through the admin API); how many."""
        doomed = [p for p in self._peers.values() if p.realm_id == realm_id]
        for peer in doomed:
            self._end_inactive(peer)
        return len(doomed)

    def _end_inactive(self, peer: Peer) -> None:
        log.info(
            "realm {realm} inactive: closing {peer}",
            realm=peer.realm_id,
            peer=peer.peer_id,
        )
        self.close_peer(peer)
        peer.sink.end(CLOSE_REALM_INACTIVE, refusal("realm_inactive"), None)

    def close_room(self, room_id: str) -> bool:
        """Admin: end every member (4008) and drop the room (a configured,
        persistent room stays, empty); False if unknown."""
        room = self._rooms.get(room_id)
        if room is None:
            return False
        for peer in list(room.members.values()):
            self.close_peer(peer)
            peer.sink.end(CLOSE_BY_OPERATOR, None, None)
        if not room.persistent:
            del self._rooms[room_id]
        return True

    def kick(self, room_id: str, peer_id: str) -> bool:
        """Admin: end one member's connection (4008); False if not a member."""
        room = self._rooms.get(room_id)
        peer = None if room is None else room.members.get(peer_id)
        if peer is None:
            return False
        self.close_peer(peer)
        peer.sink.end(CLOSE_BY_OPERATOR, None, None)
        return True

    def peer_remote(self, peer: Peer) -> str | None:
        """The member's IP address, when its connection knows it."""
        remote = getattr(peer.sink, "remote_ip", None)
        return remote if isinstance(remote, str) and remote else None

    def end_all(self) -> None:
        """Shutdown: every peer is closed with 1001."""
        for peer in list(self._peers.values()):
            self.close_peer(peer)
            peer.sink.end(CLOSE_GOING_AWAY, None, None)

    # ------------------------------------------------------------------- REST

    def stats(self) -> dict[str, Any]:
        total = len(self._peers)
        in_rooms = sum(len(r.members) for r in self._rooms.values())
        return {
            "peers": {"total": total, "without_room": total - in_rooms},
            "rooms": {"total": len(self._rooms), "total_peers": in_rooms},
            "timestamp": self._ms(),
        }


__all__ = ["RoomService"]
