"""The AIS current-key store: ``ais_keys.db``, table ``current_key`` (ais.md §5).

One row (``id = 1``, a CHECK constraint), so there is never a second current
key. Nodes sharing the store rotate by compare-and-swap
(:func:`replace_current_key_txn`): of two nodes replacing the same key at once,
the database lets one win and the other adopts the winner's key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import attrs

from actrix.core.storage import Database, MigrationSet, StoreSpec

AIS_DB: Final = "ais_keys.db"
MIGRATIONS: Final = MigrationSet("actrix.ais")
STORE: Final = StoreSpec(AIS_DB, "ais", MIGRATIONS)


@attrs.frozen
class CurrentKey:
    """The KS public key new tokens are encrypted to."""

    key_id: int
    public_key: bytes  # 33-byte compressed
    fetched_at: int
    expires_at: int  # 0 = never
    tolerance_seconds: int


class CurrentKeyStore:
    """Async access to the single ``current_key`` row."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def load(self) -> CurrentKey | None:
        return await self._database.run(load_current_key_txn)

    async def save(self, key: CurrentKey) -> None:
        await self._database.run(save_current_key_txn, key)

    async def replace(self, key: CurrentKey, replacing: int | None) -> CurrentKey:
        """Make ``key`` current if the stored key is still ``replacing``.

        ``replacing`` None means "if there is no stored key". Returns the key
        that is current afterwards: ``key``, or the one another node stored
        first.
        """
        return await self._database.run(replace_current_key_txn, key, replacing)

    async def ping(self) -> None:
        await self._database.run(ping_txn)


def load_current_key_txn(txn: Any) -> CurrentKey | None:
    txn.execute(
        "SELECT key_id, public_key, fetched_at, expires_at, tolerance_seconds"
        " FROM current_key WHERE id = 1"
    )
    row = txn.fetchone()
    if row is None:
        return None
    try:
        public = base64.b64decode(str(row[1]), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(public) != 33:
        return None
    return CurrentKey(int(row[0]), public, int(row[2]), int(row[3]), int(row[4]))


def save_current_key_txn(txn: Any, key: CurrentKey) -> None:
    txn.execute(
        "INSERT INTO current_key (id, key_id, public_key, fetched_at, expires_at,"
        " tolerance_seconds) VALUES (1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id,"
        " public_key = excluded.public_key, fetched_at = excluded.fetched_at,"
        " expires_at = excluded.expires_at,"
        " tolerance_seconds = excluded.tolerance_seconds",
        (
            key.key_id,
            base64.b64encode(key.public_key).decode("ascii"),
            key.fetched_at,
            key.expires_at,
            key.tolerance_seconds,
        ),
    )


def replace_current_key_txn(
    txn: Any, key: CurrentKey, replacing: int | None
) -> CurrentKey:
    # One statement: the row lock orders concurrent rotations, and the WHERE
    # is evaluated against the row the winner left (READ COMMITTED re-check).
    txn.execute(
        "INSERT INTO current_key (id, key_id, public_key, fetched_at, expires_at,"
        " tolerance_seconds) VALUES (1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id,"
        " public_key = excluded.public_key, fetched_at = excluded.fetched_at,"
        " expires_at = excluded.expires_at,"
        " tolerance_seconds = excluded.tolerance_seconds"
        " WHERE current_key.key_id = ?",
        (
            key.key_id,
            base64.b64encode(key.public_key).decode("ascii"),
            key.fetched_at,
            key.expires_at,
            key.tolerance_seconds,
            -1 if replacing is None else replacing,
        ),
    )
    return load_current_key_txn(txn) or key


def ping_txn(txn: Any) -> None:
    txn.execute("SELECT 1")
    txn.fetchone()
