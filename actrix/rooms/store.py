"""``rooms.db``: configured rooms' metadata and room-token use counts.

Configured rooms are reconciled with the file once at startup (blocking, before
anything listens): a room keeps the ``created_at`` of its first start. Token uses
are written behind the in-memory counts; a failed write is logged, never raised
into a join.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from actrix.core.settings import PersistentRoom
from actrix.core.storage import Database, MigrationSet, StoreSpec

log = Logger()

ROOMS_DB: Final = "rooms.db"
MIGRATIONS: Final = MigrationSet("actrix.rooms")
STORE: Final = StoreSpec(ROOMS_DB, "rooms", MIGRATIONS)


@attrs.frozen
class StoredRoom:
    name: str
    realm_id: int
    max_peers: int
    metadata: str | None
    created_at: int  # ms


class RoomStore:
    """The daemon's handle on ``rooms.db``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def _record(self, nonce: str, exp: int) -> None:
        await self._database.run(_record_use_txn, nonce, exp)

    def record_use(self, nonce: str, exp: int) -> None:
        """Count one use of token ``nonce`` (write-behind)."""
        d = Deferred.fromCoroutine(self._record(nonce, exp))
        d.addErrback(lambda f: log.failure("recording a room token use", f))

    async def purge_uses(self, now: int) -> int:
        return await self._database.run(_delete_expired_uses_txn, now)


def _record_use_txn(txn: Any, nonce: str, exp: int) -> None:
    txn.execute(
        "INSERT INTO token_use (nonce, uses, expires_at) VALUES (?, 1, ?)"
        " ON CONFLICT (nonce) DO UPDATE SET uses = token_use.uses + 1",
        (nonce, exp),
    )


def _delete_expired_uses_txn(txn: Any, now: int) -> int:
    txn.execute("DELETE FROM token_use WHERE expires_at <= ?", (now,))
    return int(txn.rowcount)


def load_uses_txn(txn: Any, now: int) -> dict[str, tuple[int, int]]:
    txn.execute(
        "SELECT nonce, uses, expires_at FROM token_use WHERE expires_at > ?", (now,)
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in txn.fetchall()}


def sync_rooms_txn(
    txn: Any, rooms: tuple[PersistentRoom, ...], now_ms: int
) -> list[StoredRoom]:
    """Make the ``room`` table match the configuration; rows in config order."""
    txn.execute("SELECT name, created_at FROM room")
    created = {str(r[0]): int(r[1]) for r in txn.fetchall()}
    names = [r.name for r in rooms]
    for name in set(created) - set(names):
        txn.execute("DELETE FROM room WHERE name = ?", (name,))
    out = []
    for room in rooms:
        created_at = created.get(room.name, now_ms)
        txn.execute(
            "INSERT INTO room (name, realm_id, max_peers, metadata, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " realm_id = excluded.realm_id, max_peers = excluded.max_peers,"
            " metadata = excluded.metadata",
            (room.name, room.realm_id, room.max_peers, room.metadata, created_at),
        )
        out.append(
            StoredRoom(
                room.name, room.realm_id, room.max_peers, room.metadata, created_at
            )
        )
    return out


def load_sync(
    database: Database, rooms: tuple[PersistentRoom, ...], now: float
) -> tuple[list[StoredRoom], dict[str, tuple[int, int]]]:
    """Startup (blocking, before the reactor runs): configured rooms and uses."""
    return database.run_sync(_load_txn, rooms, now)


def _load_txn(
    txn: Any, rooms: tuple[PersistentRoom, ...], now: float
) -> tuple[list[StoredRoom], dict[str, tuple[int, int]]]:
    return sync_rooms_txn(txn, rooms, int(now * 1000)), load_uses_txn(txn, int(now))
