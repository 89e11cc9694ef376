"""The AIS current-key store: ``ais_keys.db``, table ``current_key`` (ais.md §5)."""

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


def ping_txn(txn: Any) -> None:
    txn.execute("SELECT 1")
    txn.fetchone()
