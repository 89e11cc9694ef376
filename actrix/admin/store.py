"""The admin store (``admin.db`` / schema ``admin``): admin tokens and the audit log.

An admin token is ``adm_<key_id>_<secret>``: ``key_id`` (12 hex digits) finds
the row, and only the SHA-256 of the 256-bit random secret is stored, compared
in constant time. A token is printed once by ``actrix admin-token create`` and
can never be shown again. The ``*_txn`` functions are plain blocking code run
on the database thread by :class:`AdminStore` or directly by the CLI.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any, Final

import attrs

from actrix.core.storage import Database, MigrationSet, StoreSpec

ADMIN_DB: Final = "admin.db"
MIGRATIONS: Final = MigrationSet("actrix.admin")
STORE: Final = StoreSpec(ADMIN_DB, "admin", MIGRATIONS)

TOKEN_PREFIX: Final = "adm_"  # noqa: S105 (a prefix, not a secret)
MAX_TOKEN_TEXT: Final = 128
MAX_NAME: Final = 64


class AdminStoreError(Exception):
    """A token change cannot be made (duplicate name, unknown token)."""


@attrs.frozen
class AdminToken:
    """One admin token row (never its secret)."""

    id: int
    key_id: str
    name: str
    read_only: bool
    created_at: int
    revoked_at: int | None
    last_used_at: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@attrs.frozen
class AuditEntry:
    """One audit log row: who did what to which target, when, from where."""

    id: int
    at: float
    who: str
    action: str
    target: str
    details: dict[str, Any]
    remote: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(repr=False)
class NewToken:
    """A token just created: the row and the one-time text."""

    token: AdminToken
    text: str

    def __repr__(self) -> str:
        return f"NewToken({self.token.name!r})"


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def split_token(text: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a token's text, or None if it has not its shape."""
    if len(text) > MAX_TOKEN_TEXT or not text.isascii():
        return None
    if not text.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = text[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


def check_name(name: str) -> str:
    """A token name: 1-64 printable characters, trimmed.

    Raises:
        AdminStoreError: blank, too long or with control characters.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise AdminStoreError(f"token name must be 1-{MAX_NAME} printable characters")
    return name


_TOKEN_COLUMNS = "id, key_id, name, read_only, created_at, revoked_at, last_used_at"  # noqa: S105


def _row_to_token(row: Sequence[Any]) -> AdminToken:
    return AdminToken(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        bool(row[3]),
        int(row[4]),
        None if row[5] is None else int(row[5]),
        None if row[6] is None else int(row[6]),
    )


def create_token_txn(txn: Any, name: str, read_only: bool, now: int) -> NewToken:
    """Insert a token; its text is returned once.

    Raises:
        AdminStoreError: the name is invalid or an active token has it.
    """
    name = check_name(name)
    txn.execute(
        "SELECT 1 FROM admin_token WHERE name = ? AND revoked_at IS NULL", (name,)
    )
    if txn.fetchone() is not None:
        raise AdminStoreError(f"an active admin token named {name!r} exists")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)  # 256 bits
    txn.execute(
        "INSERT INTO admin_token (key_id, name, secret_sha256, read_only,"
        " created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (key_id, name, _sha256(secret), int(read_only), now),
    )
    token_id = int(txn.fetchone()[0])
    token = AdminToken(token_id, key_id, name, read_only, now, None, None)
    return NewToken(token, f"{TOKEN_PREFIX}{key_id}_{secret}")


def list_tokens_txn(txn: Any) -> list[AdminToken]:
    txn.execute(f"SELECT {_TOKEN_COLUMNS} FROM admin_token ORDER BY id")  # noqa: S608
    return [_row_to_token(r) for r in txn.fetchall()]


def active_token_count_txn(txn: Any) -> int:
    txn.execute("SELECT COUNT(*) FROM admin_token WHERE revoked_at IS NULL")
    return int(txn.fetchone()[0])


def revoke_token_txn(txn: Any, name_or_key: str, now: int) -> AdminToken:
    """Revoke the active token with this name or key id.

    Raises:
        AdminStoreError: no active token has it.
    """
    txn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM admin_token"  # noqa: S608
        " WHERE (name = ? OR key_id = ?) AND revoked_at IS NULL",
        (name_or_key, name_or_key),
    )
    row = txn.fetchone()
    if row is None:
        raise AdminStoreError(f"no active admin token {name_or_key!r}")
    token = _row_to_token(row)
    txn.execute("UPDATE admin_token SET revoked_at = ? WHERE id = ?", (now, token.id))
    return attrs.evolve(token, revoked_at=now)


def verify_token_txn(txn: Any, text: str, now: int) -> AdminToken | None:
    """The active token whose text this is (its last use noted), or None."""
    parts = split_token(text)
    if parts is None:
        return None
    key_id, secret = parts
    txn.execute(
        f"SELECT {_TOKEN_COLUMNS}, secret_sha256 FROM admin_token"  # noqa: S608
        " WHERE key_id = ? AND revoked_at IS NULL",
        (key_id,),
    )
    row = txn.fetchone()
    if row is None or not hmac.compare_digest(str(row[7]), _sha256(secret)):
        return None
    token = _row_to_token(row)
    if token.last_used_at is None or now - token.last_used_at >= 60:
        txn.execute(
            "UPDATE admin_token SET last_used_at = ? WHERE id = ?", (now, token.id)
        )
    return token


def get_active_token_txn(txn: Any, token_id: int) -> AdminToken | None:
    """The token of a session, if it is still active."""
    txn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM admin_token"  # noqa: S608
        " WHERE id = ? AND revoked_at IS NULL",
        (token_id,),
    )
    row = txn.fetchone()
    return None if row is None else _row_to_token(row)


def add_audit_txn(
    txn: Any,
    at: float,
    who: str,
    action: str,
    target: str,
    details: dict[str, Any],
    remote: str,
) -> int:
    txn.execute(
        "INSERT INTO admin_audit (at, who, action, target, details, remote)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (at, who, action, target, json.dumps(details, sort_keys=True), remote),
    )
    return int(txn.fetchone()[0])


def list_audit_txn(
    txn: Any,
    action: str | None,
    who: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[AuditEntry]]:
    """``(matching count, newest-first page)``."""
    where, args = [], []
    if action:
        where.append("action = ?")
        args.append(action)
    if who:
        where.append("who = ?")
        args.append(who)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    txn.execute(f"SELECT COUNT(*) FROM admin_audit{clause}", tuple(args))  # noqa: S608
    total = int(txn.fetchone()[0])
    txn.execute(
        "SELECT id, at, who, action, target, details, remote FROM admin_audit"  # noqa: S608
        f"{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    )
    entries = [
        AuditEntry(
            int(r[0]),
            float(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            json.loads(r[5]),
            str(r[6]),
        )
        for r in txn.fetchall()
    ]
    return total, entries


def prune_audit_txn(txn: Any, before: float, max_rows: int) -> int:
    """Delete entries older than ``before`` and all but the newest ``max_rows``."""
    txn.execute("DELETE FROM admin_audit WHERE at < ?", (before,))
    removed = int(txn.rowcount)
    txn.execute(
        "SELECT id FROM admin_audit ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)
    )
    row = txn.fetchone()
    if row is not None:
        txn.execute("DELETE FROM admin_audit WHERE id <= ?", (int(row[0]),))
        removed += int(txn.rowcount)
    return removed


class AdminStore:
    """The daemon's async view of the admin store."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def verify(self, text: str, now: int) -> AdminToken | None:
        return await self._database.run(verify_token_txn, text, now)

    async def active_token(self, token_id: int) -> AdminToken | None:
        return await self._database.run(get_active_token_txn, token_id)

    async def audit(
        self,
        at: float,
        who: str,
        action: str,
        target: str,
        details: dict[str, Any],
        remote: str,
    ) -> int:
        return await self._database.run(
            add_audit_txn, at, who, action, target, details, remote
        )

    async def list_audit(
        self, action: str | None, who: str | None, limit: int, offset: int
    ) -> tuple[int, list[AuditEntry]]:
        return await self._database.run(list_audit_txn, action, who, limit, offset)

    async def prune_audit(self, before: float, max_rows: int) -> int:
        return await self._database.run(prune_audit_txn, before, max_rows)

    def active_token_count_sync(self) -> int:
        """For the startup hint; blocking (before the reactor runs)."""
        return self._database.run_sync(active_token_count_txn)
