"""The Store port: numbered migrations applied at startup, then an adbapi pool.

Each store (realms, nonces, KS keys, AIS key, signaling cache) owns one
migration set (a package directory of ``NNNN_name.sql`` files) and lives either
in one SQLite file under ``sqlite_path`` or in one PostgreSQL schema
(:mod:`actrix.core.pg`). The ``*_txn`` functions of the stores are written once,
with ``?`` placeholders; the PostgreSQL cursor translates them.

SQLite: :func:`migrate` runs synchronously before anything listens (and from
the CLI); it backs up the file before an upgrade and refuses a schema newer
than the code. :class:`SqliteDatabase` then gives the daemon a single-connection
``adbapi`` pool (SQLite allows one writer; one connection per file keeps
transactions serial without lock contention).

Dialect differences of the migrations are explicit and few: a PostgreSQL run
applies :data:`PG_DDL_SUBSTITUTIONS` to a shared file, unless the step ships a
``NNNN_name.postgresql.sql`` variant. A shared file holding only a comment is a
no-op step for SQLite (the realm store's 0003 exists for PostgreSQL alone).
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Final, Literal, ParamSpec, TypeVar

import attrs
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from actrix.core.settings import StorageConfig

log = Logger()

Dialect = Literal["sqlite", "postgresql"]

BUSY_TIMEOUT_MS: Final = 5000

P = ParamSpec("P")
R = TypeVar("R")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_PG_VARIANT_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.postgresql\.sql$")

# SQLite DDL -> PostgreSQL DDL, applied in order to a shared migration file.
# INTEGER becomes BIGINT because SQLite integers are 64-bit (Unix times in ms,
# serials); AUTOINCREMENT ids become BIGSERIAL (never reused, like SQLite's).
PG_DDL_SUBSTITUTIONS: Final = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


class StorageError(Exception):
    """A database cannot be opened, migrated or used."""


class StorageClosed(StorageError):
    """The daemon has closed this database: it is stopping.

    Work still in flight then (a change-feed refresh, a poll) has nothing left
    to do; it is not an outage and not worth a log line.
    """


class StorageUnavailable(StorageError):
    """The database cannot be reached right now; the request may be retried.

    The transaction did not commit (or its outcome is unknown to the caller, if
    the connection broke during COMMIT); the pool reconnects on the next use.
    """


@attrs.frozen
class StoreSpec:
    """Where one store lives: its SQLite file name, PostgreSQL schema and migrations."""

    filename: str
    schema: str
    migrations: MigrationSet


@attrs.frozen
class MigrationSet:
    """The migrations of one database file: ``package/directory/NNNN_*.sql``."""

    package: str
    directory: str = "migrations"

    def steps(self) -> list[tuple[int, str, str]]:
        """``(version, name, sql)`` in order; versions must be 1, 2, 3, ..."""
        root = resources.files(self.package).joinpath(self.directory)
        found = []
        for entry in root.iterdir():
            match = _MIGRATION_NAME.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry.name, entry.read_text()))
        found.sort()
        for expected, (version, name, _) in enumerate(found, start=1):
            if version != expected:
                raise StorageError(f"{self.package}: migration {name} out of sequence")
        return found

    @property
    def latest(self) -> int:
        steps = self.steps()
        return steps[-1][0] if steps else 0

    def variants(self) -> dict[int, str]:
        """The PostgreSQL variants of steps: version -> sql."""
        root = resources.files(self.package).joinpath(self.directory)
        found = {}
        for entry in root.iterdir():
            match = _PG_VARIANT_NAME.match(entry.name)
            if match:
                found[int(match.group(1))] = entry.read_text()
        return found

    def steps_for(self, dialect: Dialect) -> list[tuple[int, str, str]]:
        """:meth:`steps` as the given dialect runs them."""
        steps = self.steps()
        if dialect == "sqlite":
            return steps
        variants = self.variants()
        unknown = set(variants) - {version for version, _, _ in steps}
        if unknown:
            raise StorageError(
                f"{self.package}: PostgreSQL variant of unknown step {min(unknown)}"
            )
        return [
            (version, name, translate_ddl(sql))
            if version not in variants
            else (
                version,
                name.removesuffix(".sql") + ".postgresql.sql",
                variants[version],
            )
            for version, name, sql in steps
        ]


def translate_ddl(sql: str) -> str:
    """A shared (SQLite) migration as PostgreSQL DDL (:data:`PG_DDL_SUBSTITUTIONS`)."""
    for pattern, replacement in PG_DDL_SUBSTITUTIONS:
        sql = pattern.sub(replacement, sql)
    return sql


def configure_connection(conn: sqlite3.Connection) -> None:
    """Per-connection pragmas: WAL, NORMAL sync, foreign keys, busy timeout."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def _schema_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(path: Path, migrations: MigrationSet) -> int:
    """Bring the file at ``path`` to the newest schema; returns the version.

    The parent directory must exist. Before changing a file that already has a
    schema, a consistent copy is written next to it (``<name>.bak-v<N>``).

    Raises:
        StorageError: the file cannot be opened or written, its schema is newer
            than this code, or a migration fails (the file is left unchanged).
    """
    steps = migrations.steps()
    latest = steps[-1][0] if steps else 0
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as e:
        raise StorageError(f"{path}: cannot open: {e}") from e
    try:
        configure_connection(conn)
        current = _schema_version(conn)
        if current > latest:
            raise StorageError(
                f"{path}: schema version {current} is newer than this actrix "
                f"supports ({latest}); refusing to start"
            )
        if current == latest:
            return current
        if current > 0:
            _backup(conn, path.with_name(f"{path.name}.bak-v{current}"))
        for version, name, sql in steps:
            if version <= current:
                continue
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (version,)
                )
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                conn.execute("ROLLBACK")
                raise StorageError(f"{path}: migration {name} failed: {e}") from e
            log.info("{path}: applied migration {name}", path=str(path), name=name)
        return latest
    except sqlite3.Error as e:
        raise StorageError(f"{path}: {e}") from e
    finally:
        conn.close()


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (no ``;`` inside literals)."""
    parts, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts


def _backup(conn: sqlite3.Connection, target: Path) -> None:
    copy = sqlite3.connect(str(target))
    try:
        conn.backup(copy)
    finally:
        copy.close()
    log.info("backed up {path} before upgrading", path=str(target))


def connect_sync(
    path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A configured blocking connection, for the CLI (never on the reactor)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    configure_connection(conn)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


class Database(ABC):
    """One store's database: SQLite file or PostgreSQL schema, behind adbapi.

    ``run`` executes a ``*_txn`` function as one transaction on a pool thread;
    ``run_sync`` does the same on a blocking connection of its own, for startup
    before the reactor runs (never on the reactor).
    """

    dialect: Dialect
    label: str  # names the store in messages: a path or a schema (no password)

    @abstractmethod
    async def run(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``fn(txn, *args)`` as one transaction on the database thread.

        Raises:
            StorageUnavailable: the database cannot be reached.
        """

    @abstractmethod
    def run_sync(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``fn(txn, *args)`` as one transaction, blocking."""

    @abstractmethod
    def close(self) -> None:
        """Stop the pool; joins its threads. Idempotent."""


class SqliteDatabase(Database):
    """One SQLite file behind a single-connection ``adbapi`` pool."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, reactor: Any) -> None:
        self.path = path
        self.label = str(path)
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            str(path),
            cp_min=1,
            cp_max=1,
            cp_noisy=False,
            cp_reactor=reactor,
            cp_openfun=configure_connection,
            check_same_thread=False,
            isolation_level="DEFERRED",
        )
        self._closed = False

    async def run(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``fn(txn, *args)`` as one transaction on the database thread."""
        if self._closed:
            raise StorageClosed(f"{self.path}: database is closed")
        d: Deferred[R] = self._pool.runInteraction(fn, *args, **kwargs)
        return await d

    def run_sync(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        conn = connect_sync(self.path)
        try:
            conn.execute("BEGIN")
            try:
                result = fn(conn.cursor(), *args, **kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()


def open_database(
    directory: Path,
    filename: str,
    migrations: MigrationSet,
    reactor: IReactorThreads | IReactorTime | Any,
) -> SqliteDatabase:
    """Migrate ``directory/filename`` synchronously, then open it for the daemon.

    Raises:
        StorageError: see :func:`migrate`; also when the directory is unusable.
    """
    ensure_directory(directory)
    path = directory / filename
    migrate(path, migrations)
    return SqliteDatabase(path, reactor)


def open_store(
    config: StorageConfig,
    sqlite_path: Path,
    spec: StoreSpec,
    reactor: IReactorThreads | IReactorTime | Any,
) -> Database:
    """Migrate one store synchronously on the configured backend, then open it.

    Raises:
        StorageError: the database cannot be reached, created or migrated, or
            its schema is newer than this code; the message names the key.
    """
    if config.postgresql is None:
        return open_database(sqlite_path, spec.filename, spec.migrations, reactor)
    from actrix.core.pg import open_pg_database

    return open_pg_database(config.postgresql, spec, reactor)


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` if needed and check that it is writable.

    Raises:
        StorageError: it cannot be created or written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(
            f"sqlite_path: cannot create {directory}: {e.strerror or e}"
        ) from e
    probe = directory / ".actrix-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StorageError(
            f"sqlite_path: {directory} is not writable: {e.strerror or e}"
        ) from e


class RerunWhileChanged:
    """Run a reload when told the store changed; changes during it run it once more.

    For caches that follow a shared store's change feed: the last change is
    never missed, and a burst of announcements costs at most two runs. A store
    closing (the daemon stopping) ends quietly; an unreachable one is left to
    the cache's own poll, which reports the outage; anything else is logged.
    """

    def __init__(self, reload: Callable[[], Awaitable[None]], what: str) -> None:
        self._reload = reload
        self._what = what
        self._running: Deferred[None] | None = None
        self._again = False

    def changed(self) -> None:
        if self._running is not None:
            self._again = True
            return
        self._running = Deferred.fromCoroutine(self._until_quiet())

    async def _until_quiet(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self._reload()
                except StorageClosed:
                    return
                except StorageUnavailable as e:
                    log.debug("{what}: {error}", what=self._what, error=e)
                except Exception:
                    log.failure("{what}", what=self._what)
                if not self._again:
                    break
        finally:
            self._running = None
