"""What is live in this process: actors, rooms and TURN allocations.

Actors come from the :class:`~actrix.core.directory.ActorDirectory` (every
node's actors when it is shared), rooms from the room service and allocations
from the TURN service of this process. A service that does not run here
gives an empty list and 404 details.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.web.server import Request

from actrix.admin.context import AdminContext
from actrix.admin.lists import ApiError, Page, arg, int_arg
from actrix.admin.realm_routes import MAX_REALM_ID, list_realms_txn
from actrix.core.actrid import ActrIdError, actr_id_repr, parse_actr_id
from actrix.core.directory import ActorEntry
from actrix.proto import actr_pb2

# ---------------------------------------------------------------------------
# Actors


def actor_json(entry: ActorEntry, ctx: AdminContext) -> dict[str, Any]:
    actr_id = entry.actr_id
    t = actr_id.type
    heartbeat = int(entry.last_heartbeat) if entry.last_heartbeat else None
    # The socket's open time and address are known to the process holding it;
    # for an actor on another node or worker they stay null.
    session = None if ctx.signaling is None else ctx.signaling.session_for(entry.key)
    return {
        "id": actr_id_repr(actr_id),
        "realm_id": actr_id.realm.realm_id,
        "type": f"{t.manufacturer}:{t.name}",
        "serial": f"{actr_id.serial_number:x}",
        "status": "online" if entry.online else "offline",
        "node": entry.node,
        "connected_at": None if session is None else int(session.opened_at),
        "last_heartbeat": heartbeat,
        "remote": None if session is None or not session.ip else session.ip,
        "version": t.version if t.HasField("version") and t.version else None,
    }


async def _realm_ids(ctx: AdminContext, realm_id: int | None) -> list[int]:
    if realm_id is not None:
        return [realm_id]
    rows = await ctx.realm_db.run(list_realms_txn)
    return [r["id"] for r in rows]


async def list_actors(ctx: AdminContext, request: Request) -> dict[str, Any]:
    page = Page(
        request,
        ("id", "realm_id", "type", "status", "last_heartbeat", "node"),
        "id",
    )
    realm_id = int_arg(request, "realm_id", MAX_REALM_ID)
    type_filter, status, q = (
        arg(request, "type"),
        arg(request, "status"),
        arg(request, "q"),
    )
    if status is not None and status not in ("online", "offline"):
        raise ApiError("bad_request", "status must be online or offline")
    items: list[dict[str, Any]] = []
    if ctx.directory is not None:
        for realm in await _realm_ids(ctx, realm_id):
            for entry in await ctx.directory.in_realm(realm):
                item = actor_json(entry, ctx)
                if type_filter and item["type"] != type_filter:
                    continue
                if status and item["status"] != status:
                    continue
                if q and q.lower() not in item["id"].lower():
                    continue
                items.append(item)
    return page.answer(items)


def parse_actor(text: str) -> actr_pb2.ActrId:
    try:
        return parse_actr_id(text)
    except ActrIdError as e:
        raise ApiError("bad_request", f"actor id: {e}") from None


async def find_actor(ctx: AdminContext, text: str) -> ActorEntry:
    actr_id = parse_actor(text)
    entry = None
    if ctx.directory is not None:
        entry = await ctx.directory.lookup(
            (actr_id.realm.realm_id, actr_id.serial_number)
        )
    if entry is None:
        raise ApiError("not_found", f"actor {text} not found")
    return entry


# ---------------------------------------------------------------------------
# Rooms


def _seconds(ms: int) -> int:
    return int(ms) // 1000


def room_json(room: Any) -> dict[str, Any]:
    return {
        "id": room.room_id,
        "realm_id": room.realm_id,
        "name": room.room_id,
        "peers": len(room.members),
        "max_peers": room.max_peers,
        "created_at": _seconds(room.created_at),
        "persistent": room.persistent,
    }


def list_rooms(ctx: AdminContext, request: Request) -> dict[str, Any]:
    page = Page(request, ("id", "realm_id", "peers", "created_at"), "id")
    realm_id = int_arg(request, "realm_id", MAX_REALM_ID)
    q = arg(request, "q")
    rooms = ctx.rooms.rooms() if ctx.rooms is not None else iter(())
    return page.answer(
        room_json(r)
        for r in rooms
        if (realm_id is None or r.realm_id == realm_id)
        and (not q or q.lower() in r.room_id.lower())
    )


def find_room(ctx: AdminContext, room_id: str) -> Any:
    room = None if ctx.rooms is None else ctx.rooms.room(room_id)
    if room is None:
        raise ApiError("not_found", f"room {room_id!r} not found")
    return room


def room_detail(ctx: AdminContext, room_id: str) -> dict[str, Any]:
    room = find_room(ctx, room_id)
    assert ctx.rooms is not None  # noqa: S101 (find_room found it there)
    members = [
        {
            "peer_id": peer.peer_id,
            "display_name": peer.display_name,
            "role": peer.role,
            "protocol": "binary" if peer.binary else "json",
            "joined_at": _seconds(peer.joined_at),
            "remote": ctx.rooms.peer_remote(peer),
        }
        for peer in list(room.members.values())
    ]
    return {**room_json(room), "members": members}


# ---------------------------------------------------------------------------
# TURN allocations


def allocation_id(allocation: Any) -> str:
    """A stable id of a live allocation (its 5-tuple key and creation time)."""
    seed = f"{allocation.link.allocation_key!r}|{allocation.created_at!r}"
    return hashlib.sha256(seed.encode()).hexdigest()[:20]


def _address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allocation_json(allocation: Any, turn_realm: str) -> dict[str, Any]:
    principal: str = allocation.principal
    # An actr username carries the encrypted identity token: show whose it is.
    actr = principal.startswith("actr:")
    relays = [_address(allocation.relay_address)]
    second = allocation.relay6
    if second is not None:
        relays.append(_address(second.address))
    meter = allocation.meter
    link = allocation.link
    return {
        "id": allocation_id(allocation),
        "username": principal if actr else allocation.username,
        "realm": principal.split(":")[1] if actr else turn_realm,
        "client": _address(link.address),
        "transport": link.transport_name,
        "relay": relays,
        "created_at": int(allocation.created_at),
        "expires_at": int(allocation.expires_at),
        "bytes_in": 0 if meter is None else meter.bytes_in,
        "bytes_out": 0 if meter is None else meter.bytes_out,
        "packets_in": 0 if meter is None else meter.packets_in,
        "packets_out": 0 if meter is None else meter.packets_out,
    }


def list_allocations(ctx: AdminContext, request: Request) -> dict[str, Any]:
    page = Page(
        request,
        ("created_at", "expires_at", "username", "bytes_in", "bytes_out", "client"),
        "created_at",
    )
    username, q = arg(request, "username"), arg(request, "q")
    table = ctx.turn.allocations if ctx.turn is not None else {}
    realm = ctx.settings.turn.realm
    items = []
    for allocation in list(table.values()):
        item = allocation_json(allocation, realm)
        if username and item["username"] != username:
            continue
        if q and not any(
            q.lower() in str(item[k]).lower() for k in ("username", "client", "relay")
        ):
            continue
        items.append(item)
    return page.answer(items)


def find_allocation(ctx: AdminContext, alloc_id: str) -> Any:
    if ctx.turn is not None:
        for allocation in list(ctx.turn.allocations.values()):
            if allocation_id(allocation) == alloc_id:
                return allocation
    raise ApiError("not_found", f"allocation {alloc_id!r} not found")
