"""The KS key store: ``ks_keys.db``, table ``keys`` (ks.md §4).

Secrets are stored as given by the service (base64, or sealed with the KEK); the
store never sees a KEK.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from actrix.core.groupcommit import GroupCommit
from actrix.core.storage import Database, MigrationSet, StoreSpec

KS_DB: Final = "ks_keys.db"
MIGRATIONS: Final = MigrationSet("actrix.ks")
STORE: Final = StoreSpec(KS_DB, "ks", MIGRATIONS)


@attrs.frozen(repr=False)
class KeyRow:
    """One stored key pair."""

    key_id: int
    public_key: str  # base64 of the 33-byte compressed point
    secret_key: str  # base64 secret, or KEK-sealed
    created_at: int
    expires_at: int

    def __repr__(self) -> str:
        return f"KeyRow(key_id={self.key_id}, expires_at={self.expires_at})"


KeyInsert = tuple[str, str, int, int]  # public, secret, created_at, expires_at


class KeyStore:
    """Async access to the key table, with group commit for new keys.

    Keys generated while an insert is in flight are stored together in the
    next transaction: a burst costs one commit (one WAL flush in PostgreSQL)
    instead of one each, and each caller is answered only once its row is
    committed.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._inserts = GroupCommit(database, insert_keys_txn)

    @property
    def backend(self) -> str:
        """``SQLite`` or ``PostgreSQL`` (reported by ``/ks/health``)."""
        return "PostgreSQL" if self._database.dialect == "postgresql" else "SQLite"

    async def insert_key(
        self, public_key: str, secret_key: str, created_at: int, expires_at: int
    ) -> int:
        """Store a key pair; its id once committed."""
        return await self._inserts.submit(
            (public_key, secret_key, created_at, expires_at)
        )

    async def get_key(self, key_id: int) -> KeyRow | None:
        return await self._database.run(get_key_txn, key_id)

    async def count_keys(self) -> int:
        return await self._database.run(count_keys_txn)

    async def delete_expired(self, before: int, tolerance: int) -> int:
        """Delete keys whose ``expires_at + tolerance`` is before ``before``."""
        return await self._database.run(delete_expired_keys_txn, before, tolerance)


def insert_keys_txn(txn: Any, rows: list[KeyInsert]) -> list[int]:
    return [insert_key_txn(txn, *row) for row in rows]


def insert_key_txn(
    txn: Any, public_key: str, secret_key: str, created_at: int, expires_at: int
) -> int:
    txn.execute(
        "INSERT INTO keys (public_key, secret_key, created_at, expires_at)"
        " VALUES (?, ?, ?, ?) RETURNING key_id",
        (public_key, secret_key, created_at, expires_at),
    )
    # The database hands out the id (AUTOINCREMENT / BIGSERIAL), so nodes
    # generating keys at once never share one.
    return int(txn.fetchone()[0])


def get_key_txn(txn: Any, key_id: int) -> KeyRow | None:
    txn.execute(
        "SELECT key_id, public_key, secret_key, created_at, expires_at FROM keys"
        " WHERE key_id = ?",
        (key_id,),
    )
    row = txn.fetchone()
    return None if row is None else _row(row)


def newest_key_txn(txn: Any) -> KeyRow | None:
    txn.execute(
        "SELECT key_id, public_key, secret_key, created_at, expires_at FROM keys"
        " ORDER BY key_id DESC LIMIT 1"
    )
    row = txn.fetchone()
    return None if row is None else _row(row)


def count_keys_txn(txn: Any) -> int:
    txn.execute("SELECT COUNT(*) FROM keys")
    return int(txn.fetchone()[0])


def delete_expired_keys_txn(txn: Any, before: int, tolerance: int) -> int:
    txn.execute(
        "DELETE FROM keys WHERE expires_at > 0 AND expires_at + ? < ?",
        (tolerance, before),
    )
    return int(txn.rowcount)


def _row(row: Any) -> KeyRow:
    return KeyRow(int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))
