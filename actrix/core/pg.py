"""The PostgreSQL Store engine: one schema per store, psycopg2 through adbapi.

Each store of :mod:`actrix.core.storage` gets the schema ``<schema_prefix><store>``
(``actrix_realms``, ``actrix_ks``...), so its table names, its
``schema_version`` table and its migrations stay the same as in its SQLite file,
one ``DROP SCHEMA`` removes it, and several deployments can share a database
with different prefixes. Connections set ``search_path`` to that schema and a
``statement_timeout``; the cursor translates the stores' ``?`` placeholders to
psycopg2's ``%s`` once per statement text.

Migrations run in one transaction under an advisory lock (PostgreSQL DDL is
transactional): two nodes starting together apply them once, and a failed step
leaves the schema as it was. :class:`ChangeFeed` is a dedicated ``LISTEN``
connection read by the reactor (``addReader`` on its socket; psycopg2 ``poll``
never blocks), reconnecting by itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from actrix.core.settings import PostgresConfig
from actrix.core.storage import (
    Database,
    Dialect,
    StorageClosed,
    StorageError,
    StorageUnavailable,
    StoreSpec,
)

log = Logger()

P = ParamSpec("P")
R = TypeVar("R")

RECONNECT_DELAY: Final = 1.0

# Each schema's migrations run under this advisory lock key (with the schema's
# hash as the second key), so concurrent starts never race on CREATE SCHEMA.
_MIGRATION_LOCK: Final = 0x61637478  # "actx"


@functools.lru_cache(maxsize=512)
def to_pyformat(query: str) -> str:
    """A ``?``-placeholder statement as psycopg2 expects it (``%s``, ``%%``).

    The stores' SQL has no ``?`` inside string literals; this is the only
    translation between the two dialects' statements.
    """
    return query.replace("%", "%%").replace("?", "%s")


class QmarkCursor(psycopg2.extensions.cursor):
    """A psycopg2 cursor that takes the stores' ``?`` placeholders."""

    def execute(self, query: Any, vars: Any = None) -> None:
        if vars is not None and isinstance(query, str):
            query = to_pyformat(query)
        super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> None:
        if isinstance(query, str):
            query = to_pyformat(query)
        super().executemany(query, vars_list)


def schema_name(config: PostgresConfig, spec: StoreSpec) -> str:
    """The PostgreSQL schema of a store (``actrix_ks``...)."""
    return f"{config.schema_prefix}{spec.schema}"


def connect_kwargs(config: PostgresConfig, schema: str | None) -> dict[str, Any]:
    """Keyword arguments of ``psycopg2.connect``: the DSN, its overrides, options."""
    kwargs: dict[str, Any] = {
        "dsn": config.dsn.value if config.dsn is not None else "",
        "connect_timeout": config.connect_timeout,
        "application_name": "actrix",
    }
    for key in ("host", "port", "user", "dbname", "sslmode"):
        value = getattr(config, key)
        if value is not None:
            kwargs[key] = value
    if config.password is not None:
        kwargs["password"] = config.password.value
    options = f"-c statement_timeout={int(config.statement_timeout * 1000)}"
    if schema is not None:
        options += f" -c search_path={schema}"
    kwargs["options"] = options
    return kwargs


def describe_error(e: BaseException, *, connecting: bool = True) -> str:
    """One line for an operator: what libpq said, with the config key to look at.

    ``connecting=False`` (an established connection failed): libpq's words
    alone, since no setting is to blame. libpq's messages never contain the
    password; DSN text is not repeated.
    """
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = text.removeprefix("FATAL:").strip()
    if not connecting:
        return text
    if "password authentication failed" in text or "no password supplied" in text:
        return f"storage.password: {text}"
    if "database" in text and "does not exist" in text:
        return f"storage.dbname: {text}"
    if "role" in text and "does not exist" in text:
        return f"storage.user: {text}"
    if "SSL" in text or "sslmode" in text:
        return f"storage.sslmode: {text}"
    if isinstance(e, psycopg2.OperationalError) and (
        "connect" in text or "server" in text or "translate host" in text
    ):
        return f"storage.dsn: cannot connect to PostgreSQL: {text}"
    return text


def connect_sync(
    config: PostgresConfig, schema: str | None, *, qmark: bool = True
) -> psycopg2.extensions.connection:
    """A blocking connection (CLI, startup, migrations; never on the reactor).

    Raises:
        StorageError: it cannot connect (the message names the key).
    """
    kwargs = connect_kwargs(config, schema)
    if qmark:
        kwargs["cursor_factory"] = QmarkCursor
    try:
        conn: psycopg2.extensions.connection = psycopg2.connect(**kwargs)
    except psycopg2.Error as e:
        raise StorageError(describe_error(e)) from None
    return conn


def run_in_schema(
    config: PostgresConfig,
    schema: str,
    fn: Callable[Concatenate[Any, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``fn(txn, *args)`` as one transaction on a connection of its own.

    Blocking: for the CLI and startup, never on the reactor. Exceptions of
    ``fn`` pass through (after the rollback).

    Raises:
        StorageError: connecting or a statement failed (one line, no password).
    """
    conn = connect_sync(config, schema)
    try:
        with conn, conn.cursor() as cur:
            return fn(cur, *args, **kwargs)
    except psycopg2.Error as e:
        raise StorageError(
            f"postgresql schema {schema}: {describe_error(e, connecting=False)}"
        ) from None
    finally:
        conn.close()


def migrate_pg(config: PostgresConfig, spec: StoreSpec) -> int:
    """Bring a store's schema to the newest version; returns the version.

    Raises:
        StorageError: unreachable, the schema is newer than this code, or a
            migration failed (everything it did is rolled back).
    """
    schema = schema_name(config, spec)
    steps = spec.migrations.steps_for("postgresql")
    latest = steps[-1][0] if steps else 0
    conn = connect_sync(config, None, qmark=False)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (_MIGRATION_LOCK, schema),
            )
            cur.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            cur.execute(
                sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema))
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"
            )
            cur.execute("SELECT MAX(version) FROM schema_version")
            row = cur.fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > latest:
                raise StorageError(
                    f"storage: schema {schema} is at version {current}, newer than "
                    f"this actrix supports ({latest}); refusing to start"
                )
            for version, name, script in steps:
                if version <= current:
                    continue
                try:
                    cur.execute(script)
                except psycopg2.Error as e:
                    raise StorageError(
                        f"storage: schema {schema}: migration {name} failed "
                        f"(rolled back): {describe_error(e)}"
                    ) from None
                cur.execute(
                    "INSERT INTO schema_version (version) VALUES (%s)", (version,)
                )
                log.info(
                    "schema {schema}: applied migration {name}",
                    schema=schema,
                    name=name,
                )
        return max(current, latest)
    except psycopg2.Error as e:
        raise StorageError(f"storage: schema {schema}: {describe_error(e)}") from None
    finally:
        conn.close()


class _PgConnection(adbapi.Connection):
    """A pooled connection whose failed rollback drops it without logging.

    adbapi logs "Rollback failed" with a traceback whenever a connection breaks;
    the error reaches the caller (as :class:`StorageUnavailable`) anyway, and
    the next interaction on this thread connects afresh.
    """

    def rollback(self) -> None:
        connection: Any = self._connection
        try:
            connection.rollback()
        except psycopg2.Error:
            self._pool.disconnect(self._connection)
            raise adbapi.ConnectionLost() from None


class _PgPool(adbapi.ConnectionPool):
    connectionFactory = _PgConnection

    def _runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        conn = self.connectionFactory(self)
        trans = self.transactionFactory(self, conn)
        try:
            result = interaction(trans, *args, **kw)
            trans.close()
            conn.commit()
            return result
        except BaseException:
            with contextlib.suppress(adbapi.ConnectionLost):
                conn.rollback()
            raise


class PgDatabase(Database):
    """One store's schema behind an adbapi pool of ``pool_size`` connections."""

    dialect: Dialect = "postgresql"

    def __init__(self, config: PostgresConfig, spec: StoreSpec, reactor: Any) -> None:
        self.config = config
        self.schema = schema_name(config, spec)
        self.label = f"postgresql schema {self.schema}"
        self._pool = _PgPool(
            "psycopg2",
            cp_min=1,
            cp_max=config.pool_size,
            cp_noisy=False,
            cp_reconnect=True,
            cp_reactor=reactor,
            cursor_factory=QmarkCursor,
            **connect_kwargs(config, self.schema),
        )
        self._closed = False

    async def run(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        if self._closed:
            raise StorageClosed(f"{self.label}: database is closed")
        d: Deferred[R] = self._pool.runInteraction(fn, *args, **kwargs)
        try:
            return await d
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            reason = describe_error(e, connecting=False)
            raise StorageUnavailable(f"{self.label}: {reason}") from e
        except adbapi.ConnectionLost as e:
            raise StorageUnavailable(f"{self.label}: connection lost") from e

    def run_sync(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        return run_in_schema(self.config, self.schema, fn, *args, **kwargs)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()


def open_pg_database(
    config: PostgresConfig, spec: StoreSpec, reactor: Any
) -> PgDatabase:
    """Migrate a store's schema synchronously, then open its pool.

    Raises:
        StorageError: see :func:`migrate_pg`.
    """
    migrate_pg(config, spec)
    return PgDatabase(config, spec, reactor)


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of a schema's change triggers (the schema's name)."""
    return schema


@implementer(IReadDescriptor)
class ChangeFeed(Service):
    """Calls ``on_change`` when a ``NOTIFY`` arrives on ``channel``.

    A dedicated autocommit connection LISTENs; the reactor watches its socket
    and ``poll()`` reads what arrived without blocking. Connecting runs on the
    reactor's thread pool. After every (re)connection ``on_change`` is called
    once too, since notifications sent while disconnected are lost.
    """

    def __init__(
        self,
        config: PostgresConfig,
        channel: str,
        on_change: Callable[[], object],
        reactor: Any,
    ) -> None:
        self._config = config
        self._channel = channel
        self._on_change = on_change
        self._reactor = reactor
        self._conn: psycopg2.extensions.connection | None = None
        # The reactor watches a duplicate of the socket's descriptor: psycopg2
        # closes its own when the server drops the connection, and the reactor
        # must still be able to unregister what it watches.
        self._fd = -1
        self._retry: IDelayedCall | None = None
        self._down_logged = False
        self.setName(f"listen-{channel}")

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def startService(self) -> None:
        super().startService()
        Deferred.fromCoroutine(self._connect())

    def stopService(self) -> None:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._drop()

    def _open(self) -> psycopg2.extensions.connection:
        conn: psycopg2.extensions.connection = psycopg2.connect(
            **connect_kwargs(self._config, None)
        )
        conn.set_session(autocommit=True)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return conn

    async def _connect(self) -> None:
        self._retry = None
        pool = self._reactor.getThreadPool()
        try:
            conn = await deferToThreadPool(self._reactor, pool, self._open)
        except psycopg2.Error as e:
            if not self._down_logged:
                self._down_logged = True
                log.warn(
                    "change feed {channel}: {reason}; retrying every second",
                    channel=self._channel,
                    reason=describe_error(e),
                )
            self._schedule()
            return
        if not self.running:
            conn.close()
            return
        if self._down_logged:
            log.info("change feed {channel}: listening again", channel=self._channel)
        self._down_logged = False
        self._conn = conn
        self._fd = os.dup(conn.fileno())
        self._reactor.addReader(self)
        self._on_change()

    def _schedule(self) -> None:
        if self.running:
            self._retry = self._reactor.callLater(
                RECONNECT_DELAY, lambda: Deferred.fromCoroutine(self._connect())
            )

    def _drop(self) -> None:
        if self._conn is not None:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None

    # IReadDescriptor

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.poll()
        except psycopg2.Error as e:
            log.warn(
                "change feed {channel}: connection lost: {reason}",
                channel=self._channel,
                reason=describe_error(e, connecting=False),
            )
            self._down_logged = True
            self._drop()
            self._schedule()
            return
        if conn.notifies:
            conn.notifies.clear()
            self._on_change()

    def connectionLost(self, reason: Failure) -> None:
        self._drop()
        self._schedule()

    def logPrefix(self) -> str:
        return f"listen-{self._channel}"
