"""``[redis]`` and ``[cluster]``: where the shared directory lives, how many workers.

Read like the rest of :mod:`actrix.core.config` (problems by dotted key,
unknown keys refused). Either ``url`` (``redis://[:password@]host[:port][/db]``
or ``unix:///path/to/socket[?db=N]``) or the separate keys; a separate key
wins over the URL's part. The password comes from the URL, ``password``,
``password_file`` or ``password_env`` and is kept in a :class:`Secret`; a bad
URL is reported without repeating it (it may hold a password).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from actrix.core.settings import (
    DEFAULT_REDIS_KEY_PREFIX,
    DEFAULT_REDIS_PORT,
    MAX_WORKERS,
    ClusterConfig,
    RedisConfig,
    Secret,
)
from actrix.core.storage_config import read_password
from actrix.core.toml_table import Table

_URL_SCHEMES: Final = ("redis", "rediss", "unix")
# A node id names a Redis channel and keys: keep it to a safe, short alphabet.
_NODE_ID_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
)
MAX_NODE_ID: Final = 64
_PREFIX_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:.{}"
)


@attrs.frozen
class _UrlParts:
    host: str | None = None
    port: int | None = None
    db: int | None = None
    password: Secret | None = None
    tls: bool = False


_NO_URL: Final = _UrlParts()


def _parse_url(t: Table) -> _UrlParts:
    url = t.secret("url")
    if url is None:
        return _NO_URL
    problem = (
        "not a Redis URL ('redis://host:6379/0', 'rediss://host:6380/0'"
        " or 'unix:///path?db=0')"
    )
    try:
        parts = urlsplit(url.value)
        port = parts.port
    except ValueError:
        t.error("url", problem)
        return _NO_URL
    if parts.scheme not in _URL_SCHEMES:
        t.error("url", f"scheme must be one of {', '.join(_URL_SCHEMES)}")
        return _NO_URL
    if parts.scheme in ("redis", "rediss"):
        host = parts.hostname
        db_text = parts.path.strip("/")
    else:
        host = parts.path if parts.path.startswith("/") else None
        db_text = (parse_qs(parts.query).get("db") or [""])[0]
    if not host or (db_text and not db_text.isdigit()):
        t.error("url", problem)
        return _NO_URL
    return _UrlParts(
        host=host,
        port=port,
        db=int(db_text) if db_text else None,
        password=Secret(unquote(parts.password)) if parts.password else None,
        tls=parts.scheme == "rediss",
    )


def read_redis(t: Table) -> RedisConfig:
    """``[redis]``: connection and key prefix of the shared directory."""
    url = _parse_url(t)
    host = t.opt_string("host") or url.host
    if host is None:
        t.error("host", "give redis.url or redis.host")
    port = url.port or DEFAULT_REDIS_PORT
    if t.has("port"):
        port = t.integer("port", port, minimum=1, maximum=65535)
    db = url.db or 0
    if t.has("db"):
        db = t.integer("db", 0, minimum=0, maximum=15)
    elif db > 15:
        t.error("url", "database number must be 0 to 15")
    prefix = t.string("key_prefix", DEFAULT_REDIS_KEY_PREFIX, non_blank=True)
    if not set(prefix) <= _PREFIX_CHARS:
        t.error("key_prefix", "only ASCII letters, digits and _ - : . { }")
    tls = t.boolean("tls", url.tls)
    tls_ca = t.path("tls_ca")
    if (tls or tls_ca is not None) and (host or "").startswith("/"):
        t.error("tls", "TLS is for TCP connections, not a unix socket")
    if tls_ca is not None and not tls:
        t.error("tls_ca", "needs tls = true (or a rediss:// url)")
    return RedisConfig(
        host=host or "127.0.0.1",
        port=port,
        db=db,
        password=read_password(t) or url.password,
        key_prefix=prefix,
        connect_timeout=t.number("connect_timeout", 5.0, minimum=0.1, maximum=300.0),
        reply_timeout=t.number("reply_timeout", 5.0, minimum=0.1, maximum=300.0),
        tls=tls,
        tls_ca=tls_ca,
        password_file=t.path("password_file"),
    )


def read_cluster(t: Table) -> ClusterConfig:
    """``[cluster]``: worker processes and this node's name."""
    workers = t.integer("workers", 1, minimum=1, maximum=MAX_WORKERS)
    node_id = t.opt_string("node_id")
    if node_id is not None and (
        not node_id or len(node_id) > MAX_NODE_ID or not set(node_id) <= _NODE_ID_CHARS
    ):
        t.error(
            "node_id",
            f"1 to {MAX_NODE_ID} ASCII letters, digits, '_', '-' or '.'",
        )
        node_id = None
    return ClusterConfig(workers=workers, node_id=node_id)
