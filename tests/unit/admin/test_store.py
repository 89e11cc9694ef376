"""The admin store's SQL on SQLite and PostgreSQL, and the realm version column."""

from __future__ import annotations

from typing import Any

from actrix.admin import realm_routes
from actrix.admin import store as s
from actrix.admin.lists import ApiError
from actrix.core import realms
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase


class AdminStoreTests(StoreTestBase):
    def db(self) -> Any:
        return self.inline_database(s.STORE)

    def test_token_round_trip(self) -> None:
        """A created token verifies; only its hash is stored; it never shows again."""
        db = self.db()
        new = db.run_sync(s.create_token_txn, "ops", False, 100)
        self.assertTrue(new.text.startswith("adm_"))
        self.assertNotIn(new.text, repr(new))
        found = db.run_sync(s.verify_token_txn, new.text, 200)
        self.assertEqual((found.name, found.read_only), ("ops", False))
        cursor = db.conn.cursor()
        cursor.execute("SELECT key_id, secret_sha256 FROM admin_token")
        _, digest = cursor.fetchone()
        self.assertNotIn(new.text.split("_", 2)[2], digest)
        self.assertEqual(len(digest), 64)
        listed = db.run_sync(s.list_tokens_txn)
        self.assertEqual([(t.name, t.last_used_at) for t in listed], [("ops", 200)])

    def test_wrong_tokens_do_not_verify(self) -> None:
        """Altered secrets, unknown key ids and junk do not verify."""
        db = self.db()
        new = db.run_sync(s.create_token_txn, "ops", True, 100)
        key_id = new.token.key_id
        for text in (
            new.text + "x",
            f"adm_{key_id}_wrong",
            "adm_ffffffffffff_x",
            "",
            "adm_",
            "adm_zz_x",
            "é" * 10,
        ):
            self.assertIsNone(db.run_sync(s.verify_token_txn, text, 1), text)

    def test_names_and_revocation(self) -> None:
        """Active names are unique; a revoked token stops verifying; names free up."""
        db = self.db()
        first = db.run_sync(s.create_token_txn, "ops", False, 1)
        with self.assertRaises(s.AdminStoreError):
            db.run_sync(s.create_token_txn, " ops ", False, 2)
        for bad in ("", "   ", "x" * 65, "a\nb"):
            with self.assertRaises(s.AdminStoreError):
                db.run_sync(s.create_token_txn, bad, False, 2)
        self.assertEqual(db.run_sync(s.active_token_count_txn), 1)
        revoked = db.run_sync(s.revoke_token_txn, first.token.key_id, 5)
        self.assertEqual(revoked.revoked_at, 5)
        self.assertIsNone(db.run_sync(s.verify_token_txn, first.text, 6))
        self.assertIsNone(db.run_sync(s.get_active_token_txn, first.token.id))
        with self.assertRaises(s.AdminStoreError):
            db.run_sync(s.revoke_token_txn, "ops", 7)
        again = db.run_sync(s.create_token_txn, "ops", True, 8)
        self.assertNotEqual(again.token.key_id, first.token.key_id)

    def test_audit_list_and_prune(self) -> None:
        """Audit entries page newest first, filter, and prune by age and count."""
        db = self.db()
        for i in range(6):
            db.run_sync(
                s.add_audit_txn,
                float(i),
                "ops" if i % 2 else "bob",
                f"a.{i % 3}",
                str(i),
                {"n": i},
                "127.0.0.1",
            )
        total, page = db.run_sync(s.list_audit_txn, None, None, 2, 1)
        self.assertEqual((total, [e.target for e in page]), (6, ["4", "3"]))
        self.assertEqual(page[0].details, {"n": 4})
        total, page = db.run_sync(s.list_audit_txn, "a.0", "bob", 10, 0)
        self.assertEqual((total, [e.target for e in page]), (1, ["0"]))
        removed = db.run_sync(s.prune_audit_txn, 2.0, 3)
        self.assertEqual(removed, 3)  # 0 and 1 by age, 2 by count
        total, page = db.run_sync(s.list_audit_txn, None, None, 10, 0)
        self.assertEqual([e.target for e in page], ["5", "4", "3"])

    def test_realm_versions(self) -> None:
        """Every realm change bumps its version; a stale update is a conflict."""
        db = self.inline_database(realms.STORE)
        made = db.run_sync(realm_routes.add_realm_txn, None, "r", None, 1)
        self.assertEqual(made["version"], 1)
        db.run_sync(realms.set_realm_status_txn, made["id"], "Suspended", 2)
        now = db.run_sync(realm_routes.get_realm_txn, made["id"])
        assert now is not None
        self.assertEqual(now["version"], 2)
        updated = db.run_sync(
            realm_routes.update_realm_txn, made["id"], 2, {"name": "q"}, 3
        )
        self.assertEqual((updated["name"], updated["version"]), ("q", 3))
        with self.assertRaises(ApiError) as caught:
            db.run_sync(realm_routes.update_realm_txn, made["id"], 2, {"name": "z"}, 4)
        self.assertEqual(caught.exception.code, "conflict")
        kept = db.run_sync(realm_routes.get_realm_txn, made["id"])
        self.assertEqual(kept and kept["name"], "q")
        with self.assertRaises(ApiError) as caught:
            db.run_sync(realm_routes.update_realm_txn, 999, 1, {}, 4)
        self.assertEqual(caught.exception.code, "not_found")


class AdminStoreOnSqlite(SqliteBackend, AdminStoreTests):
    pass


class AdminStoreOnPostgres(PostgresBackend, AdminStoreTests):
    pass
