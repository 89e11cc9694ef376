"""The KS key table on both engines: ids, reads, expiry sweep."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from actrix.core.storage import StorageUnavailable
from actrix.ks.store import (
    STORE,
    KeyRow,
    KeyStore,
    count_keys_txn,
    delete_expired_keys_txn,
    get_key_txn,
    insert_key_txn,
    newest_key_txn,
)
from tests.backends import HeldDatabase, PostgresBackend, SqliteBackend, StoreTestBase


class KeySqlTests(StoreTestBase):
    def test_ids_are_handed_out_by_the_database(self) -> None:
        """Inserts get increasing ids, never reused after a delete."""
        txn = self.connection(STORE).cursor()
        first = insert_key_txn(txn, "p1", "s1", 10, 20)
        second = insert_key_txn(txn, "p2", "s2", 10, 20)
        self.assertGreater(second, first)
        self.assertEqual(delete_expired_keys_txn(txn, 100, 0), 2)
        third = insert_key_txn(txn, "p3", "s3", 10, 0)
        self.assertGreater(third, second)
        self.assertEqual(get_key_txn(txn, third), KeyRow(third, "p3", "s3", 10, 0))
        self.assertIsNone(get_key_txn(txn, first))

    def test_two_connections_never_share_an_id(self) -> None:
        """Keys generated through two connections (two nodes) get distinct ids."""
        one, two = self.connection(STORE), self.connection(STORE)
        ids = []
        for conn in (one, two, one, two):
            ids.append(insert_key_txn(conn.cursor(), "p", "s", 1, 0))
            conn.commit()
        self.assertEqual(len(set(ids)), 4)
        newest = newest_key_txn(one.cursor())
        assert newest is not None
        self.assertEqual(newest.key_id, max(ids))

    def test_expiry_sweep_keeps_tolerance_and_eternal_keys(self) -> None:
        """Keys past expiry + tolerance go; expires_at 0 never does."""
        txn = self.connection(STORE).cursor()
        insert_key_txn(txn, "p", "s", 1, 0)
        insert_key_txn(txn, "p", "s", 1, 100)
        insert_key_txn(txn, "p", "s", 1, 200)
        self.assertEqual(delete_expired_keys_txn(txn, 160, 50), 1)
        self.assertEqual(count_keys_txn(txn), 2)

    def test_store_methods(self) -> None:
        """KeyStore runs its transactions through the database."""
        store = KeyStore(self.inline_database(STORE))
        key_id = self.successResultOf(
            Deferred.fromCoroutine(store.insert_key("pub", "sec", 5, 0))
        )
        row = self.successResultOf(Deferred.fromCoroutine(store.get_key(key_id)))
        self.assertEqual(row, KeyRow(key_id, "pub", "sec", 5, 0))
        count = self.successResultOf(Deferred.fromCoroutine(store.count_keys()))
        self.assertEqual(count, 1)


class KeyGroupCommitTests(StoreTestBase):
    """Keys generated during an insert share the next transaction."""

    def setUp(self) -> None:
        self.db = HeldDatabase(self.connection(STORE), self.dialect)
        self.store = KeyStore(self.db)

    def test_burst_is_one_transaction_per_batch(self) -> None:
        """Four inserts cost two transactions, and get distinct ids in order."""
        calls = [
            Deferred.fromCoroutine(self.store.insert_key(f"p{i}", "s", 1, 0))
            for i in range(4)
        ]
        self.assertEqual(len(self.db.held), 1)
        self.db.release()
        self.assertEqual(len(self.db.held), 1)  # the other three, together
        self.db.release()
        ids = [self.successResultOf(d) for d in calls]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 4)
        self.assertEqual(self.db.runs, 2)

    def test_failure_reaches_the_whole_batch(self) -> None:
        """A failed transaction fails each insert in it; the next batch works."""
        self.db.fail = True
        first = Deferred.fromCoroutine(self.store.insert_key("p", "s", 1, 0))
        self.db.release()
        self.failureResultOf(first, StorageUnavailable)
        self.db.fail = False
        later = Deferred.fromCoroutine(self.store.insert_key("q", "s", 1, 0))
        self.db.release()
        self.assertIsInstance(self.successResultOf(later), int)


class KeyGroupCommitOnSqlite(SqliteBackend, KeyGroupCommitTests):
    pass


class KeyGroupCommitOnPostgres(PostgresBackend, KeyGroupCommitTests):
    pass


class KeySqlOnSqlite(SqliteBackend, KeySqlTests):
    pass


class KeySqlOnPostgres(PostgresBackend, KeySqlTests):
    pass
