"""Group commit: what arrives while a transaction is in flight goes into the next one.

A burst of small writes (nonces consumed, KS keys inserted) then costs one
database round trip and one commit (one WAL flush) instead of one each, and
every caller is still answered only once its own row is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred

from actrix.core.errors import own_copy
from actrix.core.storage import Database

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Runs ``batch_txn(txn, items)`` for whatever has queued up, in turn.

    ``batch_txn`` returns one result per item, in order. When a transaction
    fails, every caller of that batch gets its own copy of the error.
    """

    def __init__(
        self,
        database: Database,
        batch_txn: Callable[[Any, list[Item]], Sequence[Result]],
    ) -> None:
        self._database = database
        self._batch_txn = batch_txn
        self._pending: list[tuple[Item, Deferred[Result]]] = []
        self._flushing = False

    async def submit(self, item: Item) -> Result:
        """``item``'s result once the transaction holding it has committed."""
        d: Deferred[Result] = Deferred()
        self._pending.append((item, d))
        if not self._flushing:
            self._flushing = True
            Deferred.fromCoroutine(self._flush())
        return await d

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._database.run(
                        self._batch_txn, [item for item, _ in batch]
                    )
                except Exception as e:
                    for _, d in batch:
                        d.errback(own_copy(e))
                    continue
                for (_, d), result in zip(batch, results, strict=True):
                    d.callback(result)
        finally:
            self._flushing = False
