"""``signaling_cache.db``: the registry's write-behind copy and the proto spec store.

The service changes its in-memory state and records the change in a
:class:`WriteBehind` buffer; :meth:`SignalingStore.flush` writes a whole buffer in
one transaction (a timer calls it every second and shutdown once more), so a
burst of heartbeats costs one SQLite round trip. Rows are value objects with the
protobuf messages kept serialized.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from actrix.core.storage import Database, MigrationSet, StoreSpec

CACHE_DB: Final = "signaling_cache.db"
MIGRATIONS: Final = MigrationSet("actrix.signaling")
STORE: Final = StoreSpec(CACHE_DB, "signaling", MIGRATIONS)

REGISTRY_TTL: Final = 43_200  # 12 h after the last save or heartbeat (§10)
SPEC_TTL: Final = 604_800  # 7 days, extended on lookup (§10)

SpecKey = tuple[str, str, str, str]  # manufacturer, name, version or "", fingerprint


@attrs.frozen
class RegistryRow:
    """One persisted registry entry."""

    actor_key: str
    realm_id: int
    actr_id: bytes
    service_name: str
    service_spec: bytes | None
    ws_address: str | None
    last_heartbeat: float
    expires_at: int


@attrs.frozen
class SpecRow:
    """One stored ServiceSpec."""

    key: SpecKey
    spec: bytes
    expires_at: int


def row_key(realm_id: int, serial: int) -> str:
    """The ``actor_key`` column of an actor."""
    return f"{realm_id}/{serial:x}"


@attrs.define
class WriteBehind:
    """Changes not yet written; the last change of a row wins."""

    rows: dict[str, RegistryRow] = attrs.Factory(dict)
    heartbeats: dict[str, tuple[float, int]] = attrs.Factory(dict)
    deletes: set[str] = attrs.Factory(set)
    specs: dict[SpecKey, SpecRow] = attrs.Factory(dict)
    spec_touches: dict[SpecKey, int] = attrs.Factory(dict)
    spec_deletes: set[SpecKey] = attrs.Factory(set)

    def save(self, row: RegistryRow) -> None:
        self.deletes.discard(row.actor_key)
        self.heartbeats.pop(row.actor_key, None)
        self.rows[row.actor_key] = row

    def heartbeat(self, key: str, last_heartbeat: float, expires_at: int) -> None:
        row = self.rows.get(key)
        if row is not None:
            self.rows[key] = attrs.evolve(
                row, last_heartbeat=last_heartbeat, expires_at=expires_at
            )
        elif key not in self.deletes:
            self.heartbeats[key] = (last_heartbeat, expires_at)

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)
        self.heartbeats.pop(key, None)
        self.deletes.add(key)

    def save_spec(self, row: SpecRow) -> None:
        self.spec_touches.pop(row.key, None)
        self.spec_deletes.discard(row.key)
        self.specs[row.key] = row

    def delete_spec(self, key: SpecKey) -> None:
        self.specs.pop(key, None)
        self.spec_touches.pop(key, None)
        self.spec_deletes.add(key)

    def touch_spec(self, key: SpecKey, expires_at: int) -> None:
        row = self.specs.get(key)
        if row is not None:
            self.specs[key] = attrs.evolve(row, expires_at=expires_at)
        else:
            self.spec_touches[key] = expires_at

    def __bool__(self) -> bool:
        return bool(
            self.rows
            or self.heartbeats
            or self.deletes
            or self.specs
            or self.spec_touches
            or self.spec_deletes
        )


class SignalingStore:
    """Async access to ``signaling_cache.db``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def flush(self, batch: WriteBehind) -> None:
        """Write one buffer in one transaction."""
        await self._database.run(_flush_txn, batch)

    async def load_actor(self, key: str, now: int) -> RegistryRow | None:
        """The unexpired row of one actor, if any."""
        return await self._database.run(_get_row_txn, key, now)

    async def sweep(self, now: int) -> tuple[int, int]:
        """Delete expired registry rows and specs; returns both counts."""
        return await self._database.run(_sweep_txn, now)


def load_sync(database: Database, now: int) -> tuple[list[RegistryRow], list[SpecRow]]:
    """Blocking read of every unexpired row, for startup before the reactor runs."""
    return database.run_sync(_load_all_txn, now)


def _load_all_txn(txn: Any, now: int) -> tuple[list[RegistryRow], list[SpecRow]]:
    return _load_rows_txn(txn, now), _load_specs_txn(txn, now)


# ---------------------------------------------------------------------------
# SQL (database thread)

_ROW_COLUMNS = (
    "actor_key, realm_id, actr_id, service_name, service_spec, ws_address,"
    " last_heartbeat, expires_at"
)


def _to_row(r: Any) -> RegistryRow:
    return RegistryRow(
        actor_key=str(r[0]),
        realm_id=int(r[1]),
        actr_id=bytes(r[2]),
        service_name=str(r[3]),
        service_spec=None if r[4] is None else bytes(r[4]),
        ws_address=None if r[5] is None else str(r[5]),
        last_heartbeat=float(r[6]),
        expires_at=int(r[7]),
    )


def _flush_txn(txn: Any, batch: WriteBehind) -> None:
    txn.executemany(
        "DELETE FROM service_registry WHERE actor_key = ?",
        [(key,) for key in batch.deletes],
    )
    txn.executemany(
        f"INSERT INTO service_registry ({_ROW_COLUMNS})"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (actor_key) DO UPDATE SET realm_id = excluded.realm_id,"
        " actr_id = excluded.actr_id, service_name = excluded.service_name,"
        " service_spec = excluded.service_spec, ws_address = excluded.ws_address,"
        " last_heartbeat = excluded.last_heartbeat,"
        " expires_at = excluded.expires_at",
        [attrs.astuple(row) for row in batch.rows.values()],
    )
    txn.executemany(
        "UPDATE service_registry SET last_heartbeat = ?, expires_at = ?"
        " WHERE actor_key = ?",
        [(hb, exp, key) for key, (hb, exp) in batch.heartbeats.items()],
    )
    txn.executemany(
        "DELETE FROM service_specs"
        " WHERE manufacturer = ? AND name = ? AND version = ? AND fingerprint = ?",
        list(batch.spec_deletes),
    )
    txn.executemany(
        "INSERT INTO service_specs (manufacturer, name, version,"
        " fingerprint, spec, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (manufacturer, name, version, fingerprint)"
        " DO UPDATE SET spec = excluded.spec, expires_at = excluded.expires_at",
        [(*row.key, row.spec, row.expires_at) for row in batch.specs.values()],
    )
    txn.executemany(
        "UPDATE service_specs SET expires_at = ?"
        " WHERE manufacturer = ? AND name = ? AND version = ? AND fingerprint = ?"
        " AND expires_at < ?",
        [(exp, *key, exp) for key, exp in batch.spec_touches.items()],
    )


def _get_row_txn(txn: Any, key: str, now: int) -> RegistryRow | None:
    txn.execute(
        f"SELECT {_ROW_COLUMNS} FROM service_registry"  # noqa: S608
        " WHERE actor_key = ? AND expires_at > ?",
        (key, now),
    )
    row = txn.fetchone()
    return None if row is None else _to_row(row)


def _load_rows_txn(txn: Any, now: int) -> list[RegistryRow]:
    txn.execute(
        f"SELECT {_ROW_COLUMNS} FROM service_registry"  # noqa: S608
        " WHERE expires_at > ? ORDER BY last_heartbeat, actor_key",
        (now,),
    )
    return [_to_row(r) for r in txn.fetchall()]


def _load_specs_txn(txn: Any, now: int) -> list[SpecRow]:
    txn.execute(
        "SELECT manufacturer, name, version, fingerprint, spec, expires_at"
        " FROM service_specs WHERE expires_at > ?",
        (now,),
    )
    return [
        SpecRow((str(r[0]), str(r[1]), str(r[2]), str(r[3])), bytes(r[4]), int(r[5]))
        for r in txn.fetchall()
    ]


def _sweep_txn(txn: Any, now: int) -> tuple[int, int]:
    txn.execute("DELETE FROM service_registry WHERE expires_at <= ?", (now,))
    rows = int(txn.rowcount)
    txn.execute("DELETE FROM service_specs WHERE expires_at <= ?", (now,))
    return rows, int(txn.rowcount)
