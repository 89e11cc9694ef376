"""``actrix migrate-store``: a single node's SQLite files into the shared PostgreSQL.

Copies what must survive the move (realms, realm config and ACL rows, KS key
pairs as stored, KEK-sealed or not, and the AIS current key) with their ids;
nonces (300 s) and the signaling cache (rebuilt by reconnecting actors) are not
copied. Everything is one PostgreSQL transaction: a failure copies nothing.

A non-empty target is refused unless ``force`` is given, except when it already
holds exactly the source rows (a repeated run then changes nothing and
succeeds). With ``force`` each source row is upserted by primary key, so a
second forced run converges on the same state. The serial sequences are moved
past the copied ids, so later inserts never reuse one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import psycopg2
from psycopg2 import sql

from actrix.ais.store import STORE as AIS_STORE
from actrix.core.nonces import STORE as NONCE_STORE
from actrix.core.pg import connect_sync, describe_error, migrate_pg, schema_name
from actrix.core.realms import STORE as REALM_STORE
from actrix.core.settings import PostgresConfig, Secret
from actrix.core.storage import StorageError, StoreSpec, migrate
from actrix.ks.store import STORE as KS_STORE
from actrix.signaling.store import STORE as SIGNALING_STORE

ALL_STORES: Final = (REALM_STORE, NONCE_STORE, KS_STORE, AIS_STORE, SIGNALING_STORE)


@attrs.frozen
class CopiedTable:
    """One table copied by ``migrate-store``: its columns, key and serial column."""

    store: StoreSpec
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    serial: str | None = None


COPIED_TABLES: Final = (
    CopiedTable(
        REALM_STORE,
        "realm",
        (
            "rowid",
            "realm_id",
            "name",
            "status",
            "expires_at",
            "created_at",
            "updated_at",
        ),
        ("rowid",),
        "rowid",
    ),
    CopiedTable(
        REALM_STORE,
        "realmconfig",
        ("rowid", "realm_rowid", "key", "value"),
        ("rowid",),
        "rowid",
    ),
    CopiedTable(
        REALM_STORE,
        "actoracl",
        (
            "rowid",
            "realm_id",
            "from_type",
            "to_type",
            "access",
            "operator_access",
            "actor_access",
        ),
        ("rowid",),
        "rowid",
    ),
    CopiedTable(
        REALM_STORE,
        "actor_revocation",
        ("realm_id", "serial", "actor_id", "reason", "revoked_at", "expires_at"),
        ("realm_id", "serial"),
    ),
    CopiedTable(
        KS_STORE,
        "keys",
        ("key_id", "public_key", "secret_key", "created_at", "expires_at"),
        ("key_id",),
        "key_id",
    ),
    CopiedTable(
        AIS_STORE,
        "current_key",
        (
            "id",
            "key_id",
            "public_key",
            "fetched_at",
            "expires_at",
            "tolerance_seconds",
        ),
        ("id",),
    ),
)


class CopyRefused(StorageError):
    """The target already holds other rows and ``force`` was not given."""


def copy_plan(
    source: str, target: str, configured: PostgresConfig | None
) -> tuple[Path, PostgresConfig]:
    """The SQLite directory of ``sqlite:DIR`` and the settings of ``postgresql:DSN``.

    An empty DSN takes ``configured`` (a config's ``[storage]``); a DSN given
    with it replaces only its ``dsn``.

    Raises:
        StorageError: a location is malformed, or nothing names the target.
    """
    directory = Path(_location(source, "sqlite", "--from"))
    dsn = _location(target, "postgresql", "--to")
    if configured is not None:
        config = configured if not dsn else attrs.evolve(configured, dsn=Secret(dsn))
    elif dsn:
        config = PostgresConfig(dsn=Secret(dsn))
    else:
        raise StorageError(
            "--to postgresql: needs a DSN, or --config with a [storage] table"
        )
    if not directory.is_dir():
        raise StorageError(f"--from: {directory} is not a directory")
    return directory, config


def _location(value: str, scheme: str, option: str) -> str:
    prefix = f"{scheme}:"
    if not value.startswith(prefix):
        # Not the value itself: a DSN may carry a password.
        raise StorageError(
            f"{option}: expected {scheme}:..., got {value.split(':', 1)[0]}:..."
        )
    return value[len(prefix) :]


def read_source(directory: Path) -> dict[CopiedTable, list[tuple[Any, ...]]]:
    """Every copied table's rows from the SQLite files in ``directory``.

    A missing file counts as empty; an existing one is migrated first (with the
    usual backup), so its columns are the ones the target has.

    Raises:
        StorageError: a file cannot be opened or migrated.
    """
    rows: dict[CopiedTable, list[tuple[Any, ...]]] = {}
    for table in COPIED_TABLES:
        path = directory / table.store.filename
        if not path.exists():
            rows[table] = []
            continue
        migrate(path, table.store.migrations)
        conn = sqlite3.connect(str(path))
        try:
            rows[table] = _select_rows_txn(conn.cursor(), table, None)
        except sqlite3.Error as e:
            raise StorageError(f"{path}: {e}") from e
        finally:
            conn.close()
    return rows


def copy_to_postgresql(
    rows: dict[CopiedTable, list[tuple[Any, ...]]],
    config: PostgresConfig,
    *,
    force: bool,
) -> dict[str, int]:
    """Write ``rows`` into the target's schemas; returns rows copied per table.

    Raises:
        CopyRefused: the target holds other rows and ``force`` is false.
        StorageError: the target cannot be reached, migrated or written.
    """
    for spec in {table.store for table in COPIED_TABLES}:
        migrate_pg(config, spec)
    conn = connect_sync(config, None)
    try:
        with conn, conn.cursor() as cur:
            return _copy_txn(cur, config, rows, force)
    except psycopg2.Error as e:
        raise StorageError(f"storage: copy failed: {describe_error(e)}") from None
    finally:
        conn.close()


def _qualified(config: PostgresConfig, table: CopiedTable) -> sql.Composed:
    return sql.SQL("{}.{}").format(
        sql.Identifier(schema_name(config, table.store)), sql.Identifier(table.name)
    )


def _select_rows_txn(
    txn: Any, table: CopiedTable, target: sql.Composed | None
) -> list[tuple[Any, ...]]:
    columns = ", ".join(table.columns)
    order = ", ".join(table.key)
    if target is None:
        txn.execute(f"SELECT {columns} FROM {table.name} ORDER BY {order}")  # noqa: S608
    else:
        txn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(columns), target, sql.SQL(order)
            )
        )
    return [tuple(row) for row in txn.fetchall()]


def _copy_txn(
    txn: Any,
    config: PostgresConfig,
    rows: dict[CopiedTable, list[tuple[Any, ...]]],
    force: bool,
) -> dict[str, int]:
    existing = {
        table: _select_rows_txn(txn, table, _qualified(config, table))
        for table in COPIED_TABLES
    }
    if any(existing.values()) and not force:
        if all(sorted(existing[t]) == sorted(rows[t]) for t in COPIED_TABLES):
            return {table.name: 0 for table in COPIED_TABLES}
        counts = ", ".join(
            f"{table.name} {len(found)}" for table, found in existing.items() if found
        )
        raise CopyRefused(
            f"storage: the target already holds rows ({counts}); "
            "pass --force to upsert the source rows into it"
        )
    copied: dict[str, int] = {}
    for table in COPIED_TABLES:
        _upsert_rows_txn(txn, _qualified(config, table), table, rows[table])
        copied[table.name] = len(rows[table])
        if table.serial is not None:
            _advance_serial_txn(txn, config, table)
    return copied


def _upsert_rows_txn(
    txn: Any, target: sql.Composed, table: CopiedTable, rows: Sequence[tuple[Any, ...]]
) -> None:
    updates = [c for c in table.columns if c not in table.key]
    statement = sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}"
    ).format(
        target,
        sql.SQL(", ").join(map(sql.Identifier, table.columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(table.columns)),
        sql.SQL(", ").join(map(sql.Identifier, table.key)),
        sql.SQL(", ").join(
            sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in updates
        ),
    )
    for row in rows:
        txn.execute(statement, row)


def _advance_serial_txn(txn: Any, config: PostgresConfig, table: CopiedTable) -> None:
    assert table.serial is not None  # noqa: S101 (checked by the caller)
    qualified = f"{schema_name(config, table.store)}.{table.name}"
    txn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, %s),"
            " COALESCE(MAX({}), 0) + 1, false) FROM {}"
        ).format(sql.Identifier(table.serial), _qualified(config, table)),
        (qualified, table.serial),
    )


def schema_problems(config: PostgresConfig) -> list[str]:
    """For ``check --runtime``: connect, and find schemas newer than this code.

    Creates nothing.
    """
    try:
        conn = connect_sync(config, None)
    except StorageError as e:
        return [str(e)]
    problems = []
    try:
        with conn, conn.cursor() as cur:
            for spec in ALL_STORES:
                found = _schema_version_txn(cur, schema_name(config, spec))
                latest = spec.migrations.latest
                if found is not None and found > latest:
                    problems.append(
                        f"storage: schema {schema_name(config, spec)} is at version "
                        f"{found}, newer than this actrix supports ({latest})"
                    )
    except psycopg2.Error as e:
        problems.append(f"storage: {describe_error(e)}")
    finally:
        conn.close()
    return problems


def _schema_version_txn(txn: Any, schema: str) -> int | None:
    txn.execute("SELECT to_regclass(?)", (f"{schema}.schema_version",))
    if txn.fetchone()[0] is None:
        return None
    txn.execute(
        sql.SQL("SELECT MAX(version) FROM {}.schema_version").format(
            sql.Identifier(schema)
        )
    )
    row = txn.fetchone()
    return None if row[0] is None else int(row[0])
