"""Tests for actrix.signaling.store: the write-behind buffer and the SQL functions."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.signaling.store import (
    REGISTRY_TTL,
    STORE,
    RegistryRow,
    SignalingStore,
    SpecRow,
    WriteBehind,
    _flush_txn,
    _get_row_txn,
    _load_rows_txn,
    _load_specs_txn,
    _sweep_txn,
    load_sync,
    row_key,
)
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase

NOW = 1_700_000_000
SPEC_KEY = ("acme", "echo", "1.0", "fp-1")


def row(serial: int, heartbeat: float = NOW, realm_id: int = 7) -> RegistryRow:
    return RegistryRow(
        actor_key=row_key(realm_id, serial),
        realm_id=realm_id,
        actr_id=b"id-%d" % serial,
        service_name="acme/echo",
        service_spec=None,
        ws_address=None,
        last_heartbeat=heartbeat,
        expires_at=int(heartbeat) + REGISTRY_TTL,
    )


def flush(conn: Any, batch: WriteBehind) -> None:
    _flush_txn(conn.cursor(), batch)
    conn.commit()


class RowKeyTests(SynchronousTestCase):
    def test_row_key_is_realm_and_hex_serial(self) -> None:
        """The actor_key column is ``<realm>/<serial hex>``."""
        self.assertEqual(row_key(101, 0x1A2B), "101/1a2b")


class WriteBehindTests(SynchronousTestCase):
    def test_empty_buffer_is_false(self) -> None:
        """A buffer without changes is falsy; any change makes it truthy."""
        batch = WriteBehind()
        self.assertFalse(batch)
        batch.delete("7/1")
        self.assertTrue(batch)

    def test_heartbeat_after_save_updates_the_row(self) -> None:
        """A heartbeat of an unwritten row is folded into that row."""
        batch = WriteBehind()
        batch.save(row(1))
        batch.heartbeat("7/1", NOW + 10, NOW + 10 + REGISTRY_TTL)
        self.assertEqual(batch.rows["7/1"].last_heartbeat, NOW + 10)
        self.assertEqual(batch.rows["7/1"].expires_at, NOW + 10 + REGISTRY_TTL)
        self.assertEqual(batch.heartbeats, {})

    def test_delete_drops_pending_row_and_heartbeat(self) -> None:
        """A delete wins over an earlier save and heartbeat of the same actor."""
        batch = WriteBehind()
        batch.save(row(1))
        batch.heartbeat("7/2", NOW, NOW + REGISTRY_TTL)
        batch.delete("7/1")
        batch.delete("7/2")
        self.assertEqual((batch.rows, batch.heartbeats), ({}, {}))
        self.assertEqual(batch.deletes, {"7/1", "7/2"})

    def test_heartbeat_after_delete_is_ignored(self) -> None:
        """A heartbeat of a deleted actor does not resurrect it."""
        batch = WriteBehind()
        batch.delete("7/1")
        batch.heartbeat("7/1", NOW, NOW + REGISTRY_TTL)
        self.assertEqual(batch.heartbeats, {})

    def test_save_after_delete_cancels_the_delete(self) -> None:
        """Registering again after an unregister writes the new row."""
        batch = WriteBehind()
        batch.delete("7/1")
        batch.save(row(1))
        self.assertEqual(batch.deletes, set())
        self.assertIn("7/1", batch.rows)

    def test_spec_touch_folds_into_pending_spec(self) -> None:
        """Extending an unwritten spec changes its row, not a separate touch."""
        batch = WriteBehind()
        batch.save_spec(SpecRow(SPEC_KEY, b"spec", NOW))
        batch.touch_spec(SPEC_KEY, NOW + 50)
        self.assertEqual(batch.specs[SPEC_KEY].expires_at, NOW + 50)
        self.assertEqual(batch.spec_touches, {})
        batch.touch_spec(("acme", "other", "", "fp"), NOW + 60)
        self.assertEqual(batch.spec_touches, {("acme", "other", "", "fp"): NOW + 60})


class RegistrySqlTests(StoreTestBase):
    def setUp(self) -> None:
        self.conn = self.connection(STORE)

    def test_flush_inserts_and_load_returns_in_heartbeat_order(self) -> None:
        """Saved rows come back unchanged, oldest heartbeat first."""
        batch = WriteBehind()
        for serial in (3, 1, 2):
            batch.save(row(serial, heartbeat=NOW - serial))
        batch.save(row(4, heartbeat=NOW - 2))
        flush(self.conn, batch)
        rows = _load_rows_txn(self.conn.cursor(), NOW)
        self.assertEqual([r.actor_key for r in rows], ["7/3", "7/2", "7/4", "7/1"])
        self.assertEqual(rows[0], row(3, heartbeat=NOW - 3))

    def test_optional_columns_round_trip(self) -> None:
        """A spec blob and a ws_address are stored and read back."""
        full = RegistryRow("7/9", 7, b"id", "svc", b"spec", "ws://h:1", NOW + 0.5, 99)
        batch = WriteBehind()
        batch.save(full)
        flush(self.conn, batch)
        self.assertEqual(_get_row_txn(self.conn.cursor(), "7/9", 0), full)

    def test_heartbeat_updates_a_stored_row(self) -> None:
        """A heartbeat batch moves last_heartbeat and expires_at of a stored row."""
        batch = WriteBehind()
        batch.save(row(1))
        flush(self.conn, batch)
        later = WriteBehind()
        later.heartbeat("7/1", NOW + 100, NOW + 100 + REGISTRY_TTL)
        flush(self.conn, later)
        stored = _get_row_txn(self.conn.cursor(), "7/1", NOW)
        assert stored is not None
        self.assertEqual(stored.last_heartbeat, NOW + 100)
        self.assertEqual(stored.expires_at, NOW + 100 + REGISTRY_TTL)

    def test_delete_removes_a_stored_row(self) -> None:
        """A delete batch removes the row."""
        batch = WriteBehind()
        batch.save(row(1))
        flush(self.conn, batch)
        gone = WriteBehind()
        gone.delete("7/1")
        flush(self.conn, gone)
        self.assertIsNone(_get_row_txn(self.conn.cursor(), "7/1", 0))

    def test_expired_rows_are_not_loaded(self) -> None:
        """Rows whose expires_at is not after ``now`` are invisible to reads."""
        batch = WriteBehind()
        batch.save(row(1, heartbeat=NOW))
        batch.save(row(2, heartbeat=NOW + 10))
        flush(self.conn, batch)
        cutoff = NOW + REGISTRY_TTL
        self.assertIsNone(_get_row_txn(self.conn.cursor(), "7/1", cutoff))
        self.assertIsNotNone(_get_row_txn(self.conn.cursor(), "7/2", cutoff))
        loaded = _load_rows_txn(self.conn.cursor(), cutoff)
        self.assertEqual([r.actor_key for r in loaded], ["7/2"])

    def test_sweep_deletes_expired_rows_and_specs(self) -> None:
        """The sweep removes expired rows and specs and counts them."""
        batch = WriteBehind()
        batch.save(row(1, heartbeat=NOW))
        batch.save(row(2, heartbeat=NOW + 10))
        batch.save_spec(SpecRow(SPEC_KEY, b"old", NOW))
        batch.save_spec(
            SpecRow(("acme", "echo", "", "fp-2"), b"new", NOW + REGISTRY_TTL + 1)
        )
        flush(self.conn, batch)
        counts = _sweep_txn(self.conn.cursor(), NOW + REGISTRY_TTL)
        self.assertEqual(counts, (1, 1))
        self.assertEqual(_sweep_txn(self.conn.cursor(), NOW), (0, 0))


class RegistrySqlOnSqlite(SqliteBackend, RegistrySqlTests):
    pass


class RegistrySqlOnPostgres(PostgresBackend, RegistrySqlTests):
    pass


class SpecSqlTests(StoreTestBase):
    def setUp(self) -> None:
        self.conn = self.connection(STORE)

    def test_spec_round_trip(self) -> None:
        """A saved spec is loaded with its key, bytes and expiry."""
        batch = WriteBehind()
        batch.save_spec(SpecRow(SPEC_KEY, b"\x0a\x03svc", NOW + 5))
        flush(self.conn, batch)
        self.assertEqual(
            _load_specs_txn(self.conn.cursor(), NOW),
            [SpecRow(SPEC_KEY, b"\x0a\x03svc", NOW + 5)],
        )
        self.assertEqual(_load_specs_txn(self.conn.cursor(), NOW + 5), [])

    def test_deleted_spec_leaves_the_table(self) -> None:
        """A spec delete removes the row and cancels a pending save of it."""
        batch = WriteBehind()
        batch.save_spec(SpecRow(SPEC_KEY, b"s", NOW + 100))
        flush(self.conn, batch)
        later = WriteBehind()
        later.touch_spec(SPEC_KEY, NOW + 200)
        later.delete_spec(SPEC_KEY)
        self.assertTrue(later)
        self.assertEqual(later.spec_touches, {})
        flush(self.conn, later)
        self.assertEqual(_load_specs_txn(self.conn.cursor(), 0), [])

    def test_touch_only_extends(self) -> None:
        """A touch never shortens a spec's expiry (MAX of old and new)."""
        batch = WriteBehind()
        batch.save_spec(SpecRow(SPEC_KEY, b"s", NOW + 100))
        flush(self.conn, batch)
        earlier = WriteBehind()
        earlier.touch_spec(SPEC_KEY, NOW + 50)
        flush(self.conn, earlier)
        (loaded,) = _load_specs_txn(self.conn.cursor(), 0)
        self.assertEqual(loaded.expires_at, NOW + 100)
        later = WriteBehind()
        later.touch_spec(SPEC_KEY, NOW + 500)
        flush(self.conn, later)
        (loaded,) = _load_specs_txn(self.conn.cursor(), 0)
        self.assertEqual(loaded.expires_at, NOW + 500)

    def test_saving_same_key_replaces(self) -> None:
        """The spec store keeps one row per (manufacturer, name, version, fp)."""
        for content in (b"first", b"second"):
            batch = WriteBehind()
            batch.save_spec(SpecRow(SPEC_KEY, content, NOW + 5))
            flush(self.conn, batch)
        (loaded,) = _load_specs_txn(self.conn.cursor(), 0)
        self.assertEqual(loaded.spec, b"second")


class SpecSqlOnSqlite(SqliteBackend, SpecSqlTests):
    pass


class SpecSqlOnPostgres(PostgresBackend, SpecSqlTests):
    pass


class SignalingStoreTests(StoreTestBase):
    def test_store_methods_run_the_transactions(self) -> None:
        """flush, load_actor and sweep go through the database's ``run``."""
        store = SignalingStore(self.inline_database(STORE))
        batch = WriteBehind()
        batch.save(row(1))
        self.successResultOf(Deferred.fromCoroutine(store.flush(batch)))
        found = self.successResultOf(
            Deferred.fromCoroutine(store.load_actor("7/1", NOW))
        )
        self.assertEqual(found, row(1))
        swept = self.successResultOf(
            Deferred.fromCoroutine(store.sweep(NOW + REGISTRY_TTL))
        )
        self.assertEqual(swept, (1, 0))

    def test_load_sync_reads_the_store(self) -> None:
        """Startup reads every unexpired row and spec from the store."""
        database = self.inline_database(STORE)
        conn = database.conn
        batch = WriteBehind()
        batch.save(row(1))
        batch.save(row(2, heartbeat=NOW - REGISTRY_TTL))
        batch.save_spec(SpecRow(SPEC_KEY, b"s", NOW + 5))
        flush(conn, batch)
        rows, specs = load_sync(database, NOW)
        self.assertEqual([r.actor_key for r in rows], ["7/1"])
        self.assertEqual([s.key for s in specs], [SPEC_KEY])


class SignalingStoreOnSqlite(SqliteBackend, SignalingStoreTests):
    pass


class SignalingStoreOnPostgres(PostgresBackend, SignalingStoreTests):
    pass
