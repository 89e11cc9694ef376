"""What every ``actrix`` command shares: config loading, the realm store, output."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import attrs

from actrix.core import realms
from actrix.core.config import ConfigError, PostgresConfig, Settings, load_config
from actrix.core.interfaces import RealmInfo
from actrix.core.storage import (
    StorageError,
    StoreSpec,
    connect_sync,
    ensure_directory,
    migrate,
)

DEFAULT_CONFIG = "/etc/actrix/config.toml"

T = TypeVar("T")


class CliError(Exception):
    """A command failed; the message is printed as one line."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


# ---------------------------------------------------------------------------
# Database access


def load_settings(args: argparse.Namespace) -> Settings:
    try:
        return load_config(Path(args.config))
    except ConfigError as e:
        fail("invalid config: " + "; ".join(e.problems))


def realm_db(args: argparse.Namespace, *, create: bool) -> SqliteDb | PgDb:
    return store_db(args, realms.STORE, "realm", create=create)


def store_db(
    args: argparse.Namespace, spec: StoreSpec, what: str, *, create: bool
) -> SqliteDb | PgDb:
    """The configured database of one store, migrated (created if ``create``)."""
    settings = load_settings(args)
    pg = settings.storage.postgresql
    if pg is not None:
        from actrix.core.pg import migrate_pg, schema_name

        try:
            migrate_pg(pg, spec)
        except StorageError as e:
            fail(str(e))
        return PgDb(pg, schema_name(pg, spec))
    path = settings.sqlite_path / spec.filename
    if not path.exists():
        if not create:
            fail(f"no {what} database at {path} (create one first or start the daemon)")
        try:
            ensure_directory(settings.sqlite_path)
        except StorageError as e:
            fail(str(e))
    try:
        migrate(path, spec.migrations)
    except StorageError as e:
        fail(str(e))
    return SqliteDb(path, int(args.busy_timeout * 1000))


@attrs.frozen
class SqliteDb:
    path: Path
    busy_timeout_ms: int


@attrs.frozen
class PgDb:
    config: PostgresConfig
    schema: str


def run_txn(db: SqliteDb | PgDb, fn: Callable[..., T], *fn_args: Any) -> T:
    """Run one ``*_txn`` function in a write transaction."""
    if isinstance(db, PgDb):
        return _run_pg(db, fn, *fn_args)
    path = db.path
    try:
        conn = connect_sync(path, db.busy_timeout_ms)
    except sqlite3.Error as e:
        fail(f"{path}: cannot open: {e}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn.cursor(), *fn_args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            fail(f"{path}: database is locked by another process; try again")
        fail(f"{path}: {e}")
    except sqlite3.Error as e:
        fail(f"{path}: {e}")
    except realms.RealmError as e:
        fail(str(e))
    finally:
        conn.close()


def _run_pg(db: PgDb, fn: Callable[..., T], *fn_args: Any) -> T:
    from actrix.core.pg import run_in_schema

    try:
        return run_in_schema(db.config, db.schema, fn, *fn_args)
    except (StorageError, realms.RealmError) as e:
        fail(str(e))


# ---------------------------------------------------------------------------
# Output


def realm_dict(info: RealmInfo, now: float) -> dict[str, Any]:
    data = attrs.asdict(info)
    data["state"] = info.state(now)
    return data


def print_json(out: TextIO, value: object) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def print_realm_line(out: TextIO, info: RealmInfo, now: float) -> None:
    expires = "never" if info.expires_at is None else str(info.expires_at)
    out.write(f"{info.realm_id}\t{info.state(now)}\t{info.name}\texpires={expires}\n")
