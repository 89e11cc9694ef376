"""Store tests on both engines: write the tests once, run them on each.

A store test class derives from :class:`StoreTestBase` and calls
``self.connection(STORE)`` (a DB-API connection to a freshly migrated store:
``sqlite3`` in memory, or a psycopg2 connection to new schemas of the test's
PostgreSQL cluster, see :mod:`tests.pgcluster`) or ``self.inline_database(STORE)``
(a :class:`~actrix.core.storage.Database` whose ``run`` runs the transaction at
once, for SynchronousTestCase). Each engine is then one line::

    class KeySqlOnSqlite(SqliteBackend, KeySqlTests): ...
    class KeySqlOnPostgres(PostgresBackend, KeySqlTests): ...
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.settings import PostgresConfig
from actrix.core.storage import (
    Database,
    Dialect,
    StorageUnavailable,
    StoreSpec,
    migrate,
)
from tests.pgcluster import PgCluster, storage_toml

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class InlineDatabase(Database):
    """A Database running each interaction at once on one connection."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.label = f"inline {dialect}"
        self.runs = 0

    async def run(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        self.runs += 1
        return self.run_sync(fn, *args, **kwargs)

    def run_sync(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        cursor = self.conn.cursor()
        try:
            result = fn(cursor, *args, **kwargs)
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()
        return result

    def close(self) -> None:
        self.conn.close()


class HeldDatabase(InlineDatabase):
    """Runs each interaction at once but answers only when released."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        super().__init__(conn, dialect)
        self.held: list[tuple[Deferred[Any], Any]] = []
        self.fail = False

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        d: Deferred[Any] = Deferred()
        self.held.append((d, self.run_sync(fn, *args, **kwargs)))
        return await d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            if self.fail:
                d.errback(StorageUnavailable("connection lost"))
            else:
                d.callback(result)


class StoreTestBase(_Base):
    """What store tests may ask of their engine."""

    dialect: Dialect

    def connection(self, spec: StoreSpec) -> Any:
        """A DB-API connection to the test's migrated ``spec`` (closed at cleanup).

        Each call opens another connection to the same store.
        """
        raise NotImplementedError

    def storage_toml(self) -> str:
        """The config's ``[storage]`` table for this engine ("" for the default)."""
        return ""

    def inline_database(self, spec: StoreSpec) -> InlineDatabase:
        """A :class:`Database` over :meth:`connection`."""
        return InlineDatabase(self.connection(spec), self.dialect)


class SqliteBackend(StoreTestBase, SynchronousTestCase):
    """Stores in SQLite files of the test's temp directory."""

    dialect: Dialect = "sqlite"
    _sqlite_dir: Path | None = None

    def connection(self, spec: StoreSpec) -> Any:
        if self._sqlite_dir is None:
            self._sqlite_dir = Path(self.mktemp())
            self._sqlite_dir.mkdir(parents=True)
        path = self._sqlite_dir / spec.filename
        migrate(path, spec.migrations)
        conn = sqlite3.connect(str(path))
        self.addCleanup(conn.close)
        return conn


class PostgresBackend(StoreTestBase, SynchronousTestCase):
    """Stores in schemas of the test process's PostgreSQL cluster."""

    dialect: Dialect = "postgresql"
    _pg_config: PostgresConfig | None = None

    @property
    def pg_config(self) -> PostgresConfig:
        """This test's schemas (one prefix per test, dropped at cleanup)."""
        if self._pg_config is None:
            cluster = PgCluster.get()
            self._pg_config = cluster.config()
            self.addCleanup(cluster.drop_schemas, self._pg_config.schema_prefix)
        return self._pg_config

    def storage_toml(self) -> str:
        return storage_toml(self.pg_config)

    def connection(self, spec: StoreSpec) -> Any:
        from actrix.core.pg import connect_sync, migrate_pg, schema_name

        config = self.pg_config
        migrate_pg(config, spec)
        conn = connect_sync(config, schema_name(config, spec))
        self.addCleanup(conn.close)
        return conn
