"""own_copy: every waiter of a shared failure raises its own exception object."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.errors import own_copy
from actrix.core.nonces import NonceStore


class _Unreplayable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


class OwnCopyTests(SynchronousTestCase):
    def test_copy_is_new_without_traceback(self) -> None:
        """The copy has the original's type and args but no traceback or cause."""
        try:
            try:
                raise KeyError("x")
            except KeyError as inner:
                raise ValueError("boom", 3) from inner
        except ValueError as e:
            error = e
        fresh = own_copy(error)
        self.assertIsNot(fresh, error)
        self.assertIs(type(fresh), ValueError)
        self.assertEqual(fresh.args, ("boom", 3))
        self.assertIsNone(fresh.__traceback__)
        self.assertIsNone(fresh.__cause__)
        self.assertIsNotNone(error.__traceback__)

    def test_unreplayable_exception_becomes_runtime_error(self) -> None:
        """An exception that cannot be rebuilt from its args keeps its text."""
        fresh = own_copy(_Unreplayable(1, 2))
        self.assertIsInstance(fresh, RuntimeError)
        self.assertIn("1/2", str(fresh))


class _FailingDatabase:
    dialect = "sqlite"

    """Fails every interaction with one exception object, as a pool would."""

    def __init__(self) -> None:
        self.error = RuntimeError("database is locked")
        self.blocker: Deferred[None] = Deferred()

    async def run(self, *_: Any) -> Any:
        await self.blocker
        raise self.error


class NonceWaiterTests(SynchronousTestCase):
    def test_batched_waiters_get_distinct_exceptions(self) -> None:
        """One failed group commit hands each caller its own exception object."""
        database = _FailingDatabase()
        store = NonceStore(database)  # type: ignore[arg-type]  # a fake pool
        results = [
            Deferred.fromCoroutine(store.consume(f"n{i}", 100, 300)) for i in range(3)
        ]
        database.blocker.callback(None)
        errors = [self.failureResultOf(d, RuntimeError).value for d in results]
        self.assertEqual(len({id(e) for e in errors}), 3)
        self.assertNotIn(database.error, errors)

    def test_batched_key_inserts_get_distinct_exceptions(self) -> None:
        """KS key inserts share the same group commit and get their own errors."""
        from actrix.ks.store import KeyStore

        database = _FailingDatabase()
        store = KeyStore(database)  # type: ignore[arg-type]  # a fake pool
        results = [
            Deferred.fromCoroutine(store.insert_key("p", "s", 1, 2)) for _ in range(3)
        ]
        database.blocker.callback(None)
        errors = [self.failureResultOf(d, RuntimeError).value for d in results]
        self.assertEqual(len({id(e) for e in errors}), 3)
