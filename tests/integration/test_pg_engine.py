"""The PostgreSQL engine on the reactor: the adbapi pool and the LISTEN feed."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core.pg import ChangeFeed, PgDatabase, migrate_pg
from actrix.core.storage import StorageUnavailable
from tests.pgcluster import PgCluster
from tests.unit.core.test_pg import V1, _spec


class PgDatabaseTests(TestCase):
    """The adbapi pool: transactions, lost connections, timeouts."""

    def setUp(self) -> None:
        self.cluster = PgCluster.get()
        self.config = self.cluster.config(statement_timeout=0.2)
        self.addCleanup(self.cluster.drop_schemas, self.config.schema_prefix)
        spec = _spec(V1)
        migrate_pg(self.config, spec)
        self.database = PgDatabase(self.config, spec, reactor)
        self.addCleanup(self.database.close)

    async def _insert(self) -> int:
        def txn(cur: Any) -> int:
            cur.execute("INSERT INTO t DEFAULT VALUES RETURNING a")
            return int(cur.fetchone()[0])

        return await self.database.run(txn)

    def test_lost_connections_fail_then_reconnect(self) -> Deferred[None]:
        """A killed connection fails its request as unavailable; the next works."""

        async def scenario() -> None:
            first = await self._insert()
            self.assertGreater(self.cluster.terminate_backends(), 0)
            with self.assertRaises(StorageUnavailable):
                await self._insert()
            self.assertGreater(await self._insert(), first)

        return Deferred.fromCoroutine(scenario())

    def test_failed_transaction_writes_nothing(self) -> Deferred[None]:
        """An interaction that raises after a write leaves no row."""

        def txn(cur: Any) -> None:
            cur.execute("INSERT INTO t DEFAULT VALUES")
            raise ValueError("after the write")

        def count(cur: Any) -> int:
            cur.execute("SELECT COUNT(*) FROM t")
            return int(cur.fetchone()[0])

        async def scenario() -> None:
            with self.assertRaises(ValueError):
                await self.database.run(txn)
            self.assertEqual(await self.database.run(count), 0)

        return Deferred.fromCoroutine(scenario())

    def test_statement_timeout(self) -> Deferred[None]:
        """A statement over storage.statement_timeout fails as unavailable."""

        def slow(cur: Any) -> None:
            cur.execute("SELECT pg_sleep(2)")

        async def scenario() -> None:
            with self.assertRaises(StorageUnavailable) as cm:
                await self.database.run(slow)
            self.assertIn("statement timeout", str(cm.exception))

        return Deferred.fromCoroutine(scenario())


class ChangeFeedTests(TestCase):
    """LISTEN on a dedicated connection read by the reactor."""

    def setUp(self) -> None:
        self.cluster = PgCluster.get()
        self.config = self.cluster.config()
        self.calls: list[float] = []
        self.feed = ChangeFeed(
            self.config, "chan_test", lambda: self.calls.append(1.0), reactor
        )
        self.feed.startService()
        self.addCleanup(self.feed.stopService)

    async def _wait_calls(self, count: int) -> None:
        for _ in range(100):
            if len(self.calls) >= count:
                return
            await deferLater(reactor, 0.02, lambda: None)
        self.fail(f"{count} calls expected, got {len(self.calls)}")

    def _notify(self) -> None:
        conn = self.cluster.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("NOTIFY chan_test")
        finally:
            conn.close()

    def test_notify_reaches_the_callback_and_survives_a_lost_connection(
        self,
    ) -> Deferred[None]:
        """A NOTIFY calls back at once; after the connection dies it listens again."""

        async def scenario() -> None:
            await self._wait_calls(1)  # the initial call after connecting
            self._notify()
            await self._wait_calls(2)
            self.cluster.terminate_backends()
            await self._wait_calls(3)  # reconnected: one call for what may be missed
            self.assertTrue(self.feed.listening)
            self._notify()
            await self._wait_calls(4)

        return Deferred.fromCoroutine(scenario())
