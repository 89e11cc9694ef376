"""The nonce replay store of nonce-auth: ``nonce.db`` (ks.md §1.2).

A nonce is consumed once; it stays taken until its row expires (TTL 300 s) and
expired rows are deleted by a periodic sweep. ``tap.py`` opens the one store
and hands it to KS and AIS. The original never expired rows,
so ``nonce.db`` grew without bound; expiring them is safe because the ±60 s
timestamp window already rejects any credential older than the TTL.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.groupcommit import GroupCommit
from actrix.core.storage import Database, MigrationSet, StoreSpec

log = Logger()

NONCE_DB: Final = "nonce.db"
MIGRATIONS: Final = MigrationSet("actrix.core", "nonce_migrations")
STORE: Final = StoreSpec(NONCE_DB, "nonces", MIGRATIONS)
CLEANUP_INTERVAL: Final = 60.0


class NonceStore:
    """Consumes nonces atomically in SQLite, with group commit.

    Nonces arriving while a transaction is in flight are consumed together in
    the next one, so a burst costs one DB round trip instead of one each; every
    caller still gets its answer only after its row is committed.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._commits = GroupCommit(database, _consume_nonces_txn)

    async def consume(self, nonce: str, now: int, ttl: int) -> bool:
        """Take ``nonce``; False if it is already taken and not expired."""
        return await self._commits.submit((nonce, now, ttl))

    async def cleanup(self, now: int) -> int:
        """Delete expired rows; returns how many."""
        return await self.database.run(_delete_expired_nonces_txn, now)


def _consume_nonces_txn(txn: Any, items: list[tuple[str, int, int]]) -> list[bool]:
    # Taken in nonce order: two nodes whose batches share nonces then wait on
    # each other's rows in the same order and cannot deadlock.
    results = [False] * len(items)
    for index in sorted(range(len(items)), key=lambda i: items[i][0]):
        results[index] = _consume_nonce_txn(txn, *items[index])
    return results


def _consume_nonce_txn(txn: Any, nonce: str, now: int, ttl: int) -> bool:
    # An expired row counts as absent: replace it. The unique index decides:
    # of two transactions inserting one nonce (one node or several sharing
    # PostgreSQL), the second waits for the first and then inserts nothing.
    txn.execute(
        "DELETE FROM nonce_entries WHERE nonce = ? AND expires_at <= ?", (nonce, now)
    )
    txn.execute(
        "INSERT INTO nonce_entries (nonce, context, expires_at, created_at)"
        " VALUES (?, NULL, ?, ?) ON CONFLICT (nonce) DO NOTHING",
        (nonce, now + ttl, now),
    )
    return bool(txn.rowcount == 1)


def _delete_expired_nonces_txn(txn: Any, now: int) -> int:
    txn.execute("DELETE FROM nonce_entries WHERE expires_at <= ?", (now,))
    return int(txn.rowcount)


def cleanup_timer(store: NonceStore, clock: IReactorTime) -> TimerService:
    """A TimerService deleting expired nonces every minute."""

    async def sweep() -> None:
        try:
            removed = await store.cleanup(int(clock.seconds()))
        except Exception:
            log.failure("while deleting expired nonces")
            return
        if removed:
            log.debug("deleted {count} expired nonces", count=removed)

    def tick() -> Deferred[None]:
        return Deferred.fromCoroutine(sweep())

    timer = TimerService(CLEANUP_INTERVAL, tick)
    timer.clock = clock
    timer.setName("nonce-cleanup")
    return timer
