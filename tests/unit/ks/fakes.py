"""In-memory stand-ins shared by the KS, AIS and validator unit tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from twisted.internet.defer import Deferred

from actrix.core.interfaces import KeyProviderError, KeyRecord, SecretKey
from actrix.core.storage import MigrationSet

if TYPE_CHECKING:
    from actrix.core.storage import Database

T = TypeVar("T")


class SyncDatabase:
    """A Database look-alike running each ``*_txn`` at once on ``:memory:``."""

    dialect = "sqlite"

    def __init__(self, migrations: MigrationSet) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        for _, _, sql in migrations.steps():
            self.conn.executescript(sql)
        self.path = Path(":memory:")
        self.fail = False
        self.calls = 0

    def database(self) -> Database:
        """This object typed as the Database it stands in for."""
        return cast("Database", self)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        cursor = self.conn.cursor()
        cursor.execute("BEGIN")
        try:
            result = fn(cursor, *args, **kwargs)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return result

    def rows(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


class MemoryNonces:
    """A NonceConsumer in a dict (same expiry semantics as the SQLite store)."""

    def __init__(self) -> None:
        self.taken: dict[str, int] = {}
        self.fail = False
        self.error: Exception | None = None

    async def consume(self, nonce: str, now: int, ttl: int) -> bool:
        if self.error is not None:
            raise self.error
        if self.fail:
            raise sqlite3.OperationalError("database is locked")
        expires = self.taken.get(nonce)
        if expires is not None and expires > now:
            return False
        self.taken[nonce] = now + ttl
        return True


class FakeKeys:
    """A KeyProvider over fixed coincurve keys; counts calls, can fail."""

    def __init__(self, expires_at: int = 0, tolerance: int = 3600) -> None:
        import coincurve

        self.secrets: dict[int, SecretKey] = {}
        self.publics: dict[int, bytes] = {}
        self.expires_at = expires_at
        self.tolerance = tolerance
        self.generate_calls = 0
        self.secret_calls = 0
        self.fail = False
        self._coincurve = coincurve

    async def generate_key(self) -> KeyRecord:
        self.generate_calls += 1
        if self.fail:
            raise KeyProviderError("connection refused")
        key_id = len(self.secrets) + 1
        secret = self._coincurve.PrivateKey()
        self.secrets[key_id] = SecretKey(
            key_id, secret.secret, self.expires_at, self.tolerance
        )
        self.publics[key_id] = secret.public_key.format(compressed=True)
        return KeyRecord(key_id, self.publics[key_id], self.expires_at, self.tolerance)

    async def secret_key(self, key_id: int) -> SecretKey | None:
        self.secret_calls += 1
        if self.fail:
            raise KeyProviderError("connection refused")
        return self.secrets.get(key_id)


def deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Wrap a coroutine for ``successResultOf``/``failureResultOf``."""
    return Deferred.fromCoroutine(coro)
