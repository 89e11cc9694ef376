"""Realm and ACL operations of the admin API (realm store SQL with versions).

Each realm row has a ``version`` (migration 0005) that every change bumps; a
PATCH names the version it read and is refused (409) if the row moved on, in
the same transaction as the update, so of two concurrent edits one wins and
the other learns it. After each write the realm cache reloads at once, so
signaling, TURN and rooms see the change before the answer goes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.web.server import Request

from actrix.admin.context import AdminContext
from actrix.admin.lists import (
    ApiError,
    Page,
    arg,
    int_arg,
    is_int,
    is_opt_int,
    is_reason,
    is_text,
    json_body,
)
from actrix.core import realms
from actrix.core.actrid import ActrIdError, parse_actr_type
from actrix.core.http import parse_decimal

MAX_REALM_ID = 2**32 - 1

_COLUMNS = "realm_id, name, status, expires_at, created_at, updated_at, version"


def _row(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": int(row[0]),
        "name": str(row[1]),
        "status": str(row[2]),
        "expires_at": None if row[3] is None else int(row[3]),
        "created_at": int(row[4]),
        "updated_at": int(row[5]),
        "version": int(row[6]),
    }


def list_realms_txn(txn: Any) -> list[dict[str, Any]]:
    txn.execute(f"SELECT {_COLUMNS} FROM realm ORDER BY realm_id")  # noqa: S608
    return [_row(r) for r in txn.fetchall()]


def get_realm_txn(txn: Any, realm_id: int) -> dict[str, Any] | None:
    txn.execute(
        f"SELECT {_COLUMNS} FROM realm WHERE realm_id = ?",  # noqa: S608
        (realm_id,),
    )
    row = txn.fetchone()
    return None if row is None else _row(row)


def update_realm_txn(
    txn: Any, realm_id: int, version: int, changes: dict[str, Any], now: int
) -> dict[str, Any]:
    """Apply ``changes`` (name, expires_at) if the row is still at ``version``.

    Raises:
        ApiError: not_found, or conflict when the version is stale.
    """
    sets = ", ".join(f"{name} = ?" for name in changes)
    prefix = f"{sets}, " if sets else ""
    txn.execute(
        f"UPDATE realm SET {prefix}updated_at = ?, version = version + 1"  # noqa: S608
        " WHERE realm_id = ? AND version = ?",
        (*changes.values(), now, realm_id, version),
    )
    if txn.rowcount == 0:
        current = get_realm_txn(txn, realm_id)
        if current is None:
            raise ApiError("not_found", f"realm {realm_id} not found")
        raise ApiError(
            "conflict",
            f"realm {realm_id} changed since version {version} "
            f"(now {current['version']}); reload it and try again",
        )
    found = get_realm_txn(txn, realm_id)
    assert found is not None  # noqa: S101 (updated in this transaction)
    return found


def set_status_txn(txn: Any, realm_id: int, status: str, now: int) -> dict[str, Any]:
    try:
        realms.set_realm_status_txn(txn, realm_id, status, now)
    except realms.RealmError:
        raise ApiError("not_found", f"realm {realm_id} not found") from None
    found = get_realm_txn(txn, realm_id)
    assert found is not None  # noqa: S101 (updated in this transaction)
    return found


def add_realm_txn(
    txn: Any, realm_id: int | None, name: str, expires_at: int | None, now: int
) -> dict[str, Any]:
    try:
        info = realms.add_realm_txn(txn, realm_id, name, expires_at, now)
    except realms.RealmError as e:
        raise ApiError("conflict", str(e)) from None
    found = get_realm_txn(txn, info.realm_id)
    assert found is not None  # noqa: S101 (inserted in this transaction)
    return found


def remove_realm_txn(txn: Any, realm_id: int) -> None:
    try:
        realms.remove_realm_txn(txn, realm_id)
    except realms.RealmError:
        raise ApiError("not_found", f"realm {realm_id} not found") from None


# ---------------------------------------------------------------------------
# Routes (called by AdminApi after authentication)


def _decorate(ctx: AdminContext, realm: dict[str, Any]) -> dict[str, Any]:
    online = ctx.directory.online_by_realm() if ctx.directory is not None else {}
    rooms = 0
    if ctx.rooms is not None:
        rooms = sum(1 for r in ctx.rooms.rooms() if r.realm_id == realm["id"])
    return {**realm, "actors_online": online.get(realm["id"], 0), "rooms": rooms}


def realm_id_of(text: str, what: str = "realm id") -> int:
    """A numeric id from the URL path (``what`` names it in the 400)."""
    value = parse_decimal(text, MAX_REALM_ID)
    if value is None:
        raise ApiError("bad_request", f"{what} {text!r} is not an integer")
    return value


async def list_realms(ctx: AdminContext, request: Request) -> dict[str, Any]:
    page = Page(
        request,
        ("id", "name", "status", "created_at", "updated_at", "actors_online", "rooms"),
        "id",
    )
    status, q = arg(request, "status"), arg(request, "q")
    if status is not None and status not in (
        realms.STATUS_ACTIVE,
        realms.STATUS_SUSPENDED,
    ):
        raise ApiError("bad_request", "status must be Normal or Suspended")
    rows = await ctx.realm_db.run(list_realms_txn)
    items = [
        _decorate(ctx, r)
        for r in rows
        if (status is None or r["status"] == status)
        and (not q or q.lower() in r["name"].lower())
    ]
    return page.answer(items)


async def get_realm(ctx: AdminContext, realm_id: int) -> dict[str, Any]:
    found = await ctx.realm_db.run(get_realm_txn, realm_id)
    if found is None:
        raise ApiError("not_found", f"realm {realm_id} not found")
    return _decorate(ctx, found)


async def create_realm(ctx: AdminContext, request: Request) -> dict[str, Any]:
    body = json_body(
        request,
        {
            "name": is_text(256),
            "id": lambda v: is_int(v) and 1 <= v <= MAX_REALM_ID,
            "expires_at": is_opt_int,
        },
    )
    if "name" not in body:
        raise ApiError("bad_request", "field 'name' is required")
    now = int(ctx.clock.seconds())
    created = await ctx.realm_db.run(
        add_realm_txn, body.get("id"), body["name"].strip(), body.get("expires_at"), now
    )
    await ctx.realms.load()
    return _decorate(ctx, created)


async def patch_realm(
    ctx: AdminContext, request: Request, realm_id: int
) -> dict[str, Any]:
    body = json_body(
        request,
        {"version": is_int, "name": is_text(256), "expires_at": is_opt_int},
    )
    if "version" not in body:
        raise ApiError("bad_request", "field 'version' is required")
    changes: dict[str, Any] = {k: body[k] for k in ("name", "expires_at") if k in body}
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    now = int(ctx.clock.seconds())
    updated = await ctx.realm_db.run(
        update_realm_txn, realm_id, body["version"], changes, now
    )
    await ctx.realms.load()
    return _decorate(ctx, updated)


async def set_status(ctx: AdminContext, realm_id: int, status: str) -> dict[str, Any]:
    now = int(ctx.clock.seconds())
    updated = await ctx.realm_db.run(set_status_txn, realm_id, status, now)
    await ctx.realms.load()
    return _decorate(ctx, updated)


def reason_of(request: Request, default: str) -> str:
    """The optional ``reason`` of a suspend or revoke body."""
    body = json_body(request, {"reason": is_reason})
    reason: str = body.get("reason") or default
    return reason


async def delete_realm(ctx: AdminContext, realm_id: int) -> None:
    await ctx.realm_db.run(remove_realm_txn, realm_id)
    await ctx.realms.load()


# ---------------------------------------------------------------------------
# ACL


def _rule(row: realms.AclRow) -> dict[str, Any]:
    return {
        "id": row.rowid,
        "realm_id": row.realm_id,
        "from_type": row.from_type,
        "to_type": row.to_type,
        "permission": "allow" if row.allow else "deny",
        "source": "operator" if row.operator_allow is not None else "registration",
    }


async def list_acl(ctx: AdminContext, request: Request) -> dict[str, Any]:
    page = Page(request, ("id", "realm_id", "from_type", "to_type"), "id")
    realm_id = int_arg(request, "realm_id", MAX_REALM_ID)
    from_type, to_type = arg(request, "from_type"), arg(request, "to_type")
    rows = await ctx.realm_db.run(realms.list_acl_txn, realm_id)
    return page.answer(
        _rule(r)
        for r in rows
        if (not from_type or r.from_type == from_type)
        and (not to_type or r.to_type == to_type)
    )


def _type_key(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 256:
        return False
    try:
        parse_actr_type(value)
    except ActrIdError:
        return False
    return True


def _add_acl_txn(
    txn: Any, realm_id: int, from_type: str, to_type: str, allow: bool
) -> realms.AclRow:
    if realms.get_realm_txn(txn, realm_id) is None:
        raise ApiError("not_found", f"realm {realm_id} not found")
    try:
        rowid = realms.add_acl_txn(txn, realm_id, from_type, to_type, allow)
    except realms.RealmError as e:
        raise ApiError("bad_request", str(e)) from None
    row = realms.get_acl_txn(txn, rowid)
    assert row is not None  # noqa: S101 (written in this transaction)
    return row


async def add_acl(ctx: AdminContext, request: Request) -> dict[str, Any]:
    body = json_body(
        request,
        {
            "realm_id": lambda v: is_int(v) and v <= MAX_REALM_ID,
            "from_type": _type_key,
            "to_type": _type_key,
            "permission": lambda v: v in ("allow", "deny"),
        },
    )
    missing = [
        k for k in ("realm_id", "from_type", "to_type", "permission") if k not in body
    ]
    if missing:
        raise ApiError("bad_request", f"missing field(s): {', '.join(missing)}")
    row = await ctx.realm_db.run(
        _add_acl_txn,
        body["realm_id"],
        body["from_type"],
        body["to_type"],
        body["permission"] == "allow",
    )
    await ctx.realms.load()
    return _rule(row)


def _remove_acl_txn(txn: Any, rule_id: int) -> realms.AclRow:
    row = realms.get_acl_txn(txn, rule_id)
    if row is None:
        raise ApiError("not_found", f"ACL rule {rule_id} not found")
    realms.remove_acl_txn(txn, rule_id)
    return row


async def remove_acl(ctx: AdminContext, rule_id: int) -> dict[str, Any]:
    row = await ctx.realm_db.run(_remove_acl_txn, rule_id)
    await ctx.realms.load()
    return _rule(row)
