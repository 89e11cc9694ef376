"""Room secrets (realm store) and rooms.db on SQLite and on PostgreSQL."""

from __future__ import annotations

from actrix.core.realms import STORE as REALM_STORE
from actrix.core.realms import (
    add_realm_txn,
    current_room_secret_txn,
    list_room_secrets_txn,
    rotate_room_secret_txn,
)
from actrix.core.settings import PersistentRoom
from actrix.rooms.store import STORE, _record_use_txn, load_sync
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase


class RoomSecretTests(StoreTestBase):
    def test_secret_created_once_and_rotated(self) -> None:
        """kid 1 is made on first use; rotation keeps the old one until its end."""
        db = self.inline_database(REALM_STORE)
        db.run_sync(add_realm_txn, 7, "seven", None, 0)
        first = db.run_sync(current_room_secret_txn, 7, 100)
        self.assertEqual(first.kid, 1)
        self.assertEqual(len(first.secret), 32)
        self.assertEqual(db.run_sync(current_room_secret_txn, 7, 200), first)
        second = db.run_sync(rotate_room_secret_txn, 7, 300, 3600)
        self.assertEqual(second.kid, 2)
        stored = db.run_sync(list_room_secrets_txn)
        self.assertEqual(
            [(s.kid, s.valid_until) for s in stored], [(1, 3900), (2, None)]
        )
        self.assertEqual(stored[0].secret, first.secret)
        third = db.run_sync(rotate_room_secret_txn, 7, 400, None)
        self.assertEqual(
            [(s.kid, s.secret) for s in db.run_sync(list_room_secrets_txn)],
            [(3, third.secret)],
        )


class RoomStoreTests(StoreTestBase):
    def test_configured_rooms_keep_created_at(self) -> None:
        """A configured room keeps its first created_at; a removed one goes."""
        db = self.inline_database(STORE)
        hall = PersistentRoom("hall", 1, 10, '{"topic":"x"}')
        stored, uses = load_sync(db, (hall, PersistentRoom("attic", 1, 2)), 1000.5)
        self.assertEqual([r.created_at for r in stored], [1_000_500, 1_000_500])
        self.assertEqual(uses, {})
        stored, _ = load_sync(db, (PersistentRoom("hall", 2, 20, None),), 2000.0)
        self.assertEqual(
            [
                (r.name, r.realm_id, r.max_peers, r.metadata, r.created_at)
                for r in stored
            ],
            [("hall", 2, 20, None, 1_000_500)],
        )

    def test_token_uses_counted_until_expiry(self) -> None:
        """Uses add up per nonce; expired ones are not loaded."""
        db = self.inline_database(STORE)
        db.run_sync(_record_use_txn, "nonce-aaaa", 5000)
        db.run_sync(_record_use_txn, "nonce-aaaa", 5000)
        db.run_sync(_record_use_txn, "nonce-bbbb", 1500)
        _, uses = load_sync(db, (), 2000.0)
        self.assertEqual(uses, {"nonce-aaaa": (2, 5000)})


class RoomSecretsOnSqlite(SqliteBackend, RoomSecretTests): ...


class RoomSecretsOnPostgres(PostgresBackend, RoomSecretTests): ...


class RoomStoreOnSqlite(SqliteBackend, RoomStoreTests): ...


class RoomStoreOnPostgres(PostgresBackend, RoomStoreTests): ...
