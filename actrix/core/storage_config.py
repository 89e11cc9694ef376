"""``[storage]`` of the configuration: SQLite (default) or a shared PostgreSQL.

Read like the rest of :mod:`actrix.core.config` (problems by dotted key,
unknown keys refused); the password comes from ``password``,
``password_file`` or ``password_env`` and is kept in a :class:`Secret`. A DSN
is checked with libpq's own parser, and a bad one is reported without
repeating it (it may hold a password).
"""

from __future__ import annotations

import os
from typing import Final

from actrix.core.settings import PostgresConfig, Secret, StorageConfig
from actrix.core.toml_table import Table

SSL_MODES: Final = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)
_PG_KEYS: Final = (
    "dsn",
    "host",
    "port",
    "user",
    "password",
    "password_file",
    "password_env",
    "dbname",
    "sslmode",
    "pool_size",
    "statement_timeout",
    "connect_timeout",
    "schema_prefix",
)


def read_password(t: Table) -> Secret | None:
    """``password``, ``password_file`` or ``password_env``: at most one of them."""
    given = [k for k in ("password", "password_file", "password_env") if t.has(k)]
    if len(given) > 1:
        t.error(given[1], f"give only one of {', '.join(given)}")
    password = t.secret("password")
    path = t.path("password_file")
    env = t.opt_string("password_env")
    if path is not None:
        try:
            return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or "not UTF-8 text"
            t.error("password_file", f"cannot read {path}: {reason}")
            return None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            t.error("password_env", f"environment variable {env} is not set")
            return None
        return Secret(value)
    return password


def _read_pg_dsn(t: Table) -> Secret | None:
    dsn = t.secret("dsn")
    if dsn is None:
        return None
    import psycopg2.extensions

    try:
        psycopg2.extensions.parse_dsn(dsn.value)
    except psycopg2.ProgrammingError:
        # libpq's message quotes the string, which may hold a password.
        t.error(
            "dsn",
            "not a libpq connection string "
            "('postgresql://user@host:5432/dbname' or 'host=... dbname=...')",
        )
        return None
    return dsn


def _read_postgres(t: Table) -> PostgresConfig:
    sslmode = t.opt_string("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        t.error("sslmode", f"must be one of {', '.join(SSL_MODES)}")
    prefix = t.string("schema_prefix", "actrix_")
    if not prefix.replace("_", "a").isalnum() or not prefix.isascii():
        t.error("schema_prefix", "only ASCII letters, digits and '_'")
    port = t.integer("port", 0, minimum=1, maximum=65535) if t.has("port") else None
    config = PostgresConfig(
        dsn=_read_pg_dsn(t),
        host=t.opt_string("host"),
        port=port,
        user=t.opt_string("user"),
        password=read_password(t),
        dbname=t.opt_string("dbname"),
        sslmode=sslmode,
        pool_size=t.integer("pool_size", 4, minimum=1, maximum=100),
        statement_timeout=t.number(
            "statement_timeout", 5.0, minimum=0.05, maximum=3600.0
        ),
        connect_timeout=t.integer("connect_timeout", 5, minimum=1, maximum=300),
        schema_prefix=prefix.lower(),
    )
    if config.dsn is None and config.dbname is None:
        t.error("dsn", "backend 'postgresql' needs storage.dsn or storage.dbname")
    return config


def read_storage(t: Table) -> StorageConfig:
    """``[storage]``: the backend, and for PostgreSQL its connection settings."""
    backend = t.string("backend", "sqlite")
    if backend not in ("sqlite", "postgresql"):
        t.error("backend", "must be 'sqlite' or 'postgresql'")
        backend = "sqlite"
    if backend == "postgresql":
        return StorageConfig(backend=backend, postgresql=_read_postgres(t))
    for name in _PG_KEYS:
        if t.has(name):
            t.skip(name)
            t.error(name, "only used with backend = 'postgresql'")
    return StorageConfig(backend=backend)
