"""The AIS current-key row on both engines: one current key, whoever rotates."""

from __future__ import annotations

import sqlite3

import psycopg2
from twisted.internet.defer import Deferred

from actrix.ais.store import (
    STORE,
    CurrentKey,
    CurrentKeyStore,
    load_current_key_txn,
    save_current_key_txn,
)
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase

KEY_A = CurrentKey(1, b"\x02" + bytes(32), 10, 100, 60)
KEY_B = CurrentKey(2, b"\x03" + bytes(range(32)), 20, 200, 60)


class CurrentKeySqlTests(StoreTestBase):
    def test_rotation_through_two_connections_leaves_one_key(self) -> None:
        """Two nodes saving their new key leave exactly one current key."""
        one, two = self.connection(STORE), self.connection(STORE)
        save_current_key_txn(one.cursor(), KEY_A)
        one.commit()
        save_current_key_txn(two.cursor(), KEY_B)
        two.commit()
        cur = one.cursor()
        cur.execute("SELECT COUNT(*) FROM current_key")
        self.assertEqual(cur.fetchone()[0], 1)
        self.assertEqual(load_current_key_txn(cur), KEY_B)

    def test_a_second_row_is_refused_by_the_schema(self) -> None:
        """The table itself cannot hold two current keys."""
        txn = self.connection(STORE).cursor()
        save_current_key_txn(txn, KEY_A)
        with self.assertRaises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
            txn.execute(
                "INSERT INTO current_key (id, key_id, public_key, fetched_at,"
                " expires_at, tolerance_seconds) VALUES (2, 9, 'x', 1, 1, 1)"
            )

    def test_replace_is_compare_and_swap(self) -> None:
        """A rotation replaces only the key it saw; a late one gets the winner."""
        store = CurrentKeyStore(self.inline_database(STORE))

        def replace(key: CurrentKey, replacing: int | None) -> CurrentKey:
            return self.successResultOf(
                Deferred.fromCoroutine(store.replace(key, replacing))
            )

        self.assertEqual(replace(KEY_A, None), KEY_A)
        self.assertEqual(replace(KEY_B, None), KEY_A)  # someone stored one first
        self.assertEqual(replace(KEY_B, KEY_A.key_id), KEY_B)
        late = CurrentKey(3, KEY_A.public_key, 30, 300, 60)
        self.assertEqual(replace(late, KEY_A.key_id), KEY_B)  # lost the race

    def test_store_round_trip(self) -> None:
        """save then load returns the key; an empty table loads None."""
        store = CurrentKeyStore(self.inline_database(STORE))
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(store.load())))
        self.successResultOf(Deferred.fromCoroutine(store.save(KEY_A)))
        loaded = self.successResultOf(Deferred.fromCoroutine(store.load()))
        self.assertEqual(loaded, KEY_A)
        self.successResultOf(Deferred.fromCoroutine(store.ping()))


class CurrentKeyOnSqlite(SqliteBackend, CurrentKeySqlTests):
    pass


class CurrentKeyOnPostgres(PostgresBackend, CurrentKeySqlTests):
    pass
