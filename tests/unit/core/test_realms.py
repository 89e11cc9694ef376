"""The realm/ACL store and the daemon's in-memory RealmCache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import realms
from actrix.core.interfaces import RealmInfo
from actrix.core.storage import Database, migrate


def _memory() -> sqlite3.Cursor:
    conn = sqlite3.connect(":memory:")
    sql = (Path(realms.__file__).parent / "migrations" / "0001_realms.sql").read_text()
    conn.executescript(sql)
    return conn.cursor()


class RealmStoreTests(SynchronousTestCase):
    def test_add_and_list(self) -> None:
        """Realms get the next free id when none is given."""
        txn = _memory()
        realms.add_realm_txn(txn, 1001, "a", None, 10)
        info = realms.add_realm_txn(txn, None, "b", 99, 10)
        self.assertEqual(info.realm_id, 1002)
        self.assertEqual(
            [r.realm_id for r in realms.list_realms_txn(txn)], [1001, 1002]
        )

    def test_duplicate_realm_rejected(self) -> None:
        """The same realm id cannot be added twice."""
        txn = _memory()
        realms.add_realm_txn(txn, 1, "a", None, 10)
        self.assertRaises(
            realms.RealmError, realms.add_realm_txn, txn, 1, "b", None, 10
        )

    def test_status_and_remove(self) -> None:
        """Suspend/resume change status; remove deletes the realm and its ACL."""
        txn = _memory()
        realms.add_realm_txn(txn, 1, "a", None, 10)
        realms.add_acl_txn(txn, 1, "a:b", "c:d", True)
        realms.set_realm_status_txn(txn, 1, realms.STATUS_SUSPENDED, 11)
        info = realms.get_realm_txn(txn, 1)
        assert info is not None
        self.assertEqual(info.state(0), "suspended")
        realms.remove_realm_txn(txn, 1)
        self.assertIsNone(realms.get_realm_txn(txn, 1))
        self.assertEqual(realms.list_acl_txn(txn), [])
        self.assertRaises(realms.RealmError, realms.remove_realm_txn, txn, 1)
        self.assertRaises(
            realms.RealmError, realms.set_realm_status_txn, txn, 1, "Normal", 1
        )

    def test_realm_problem_texts(self) -> None:
        """Unknown, expired and suspended realms get the spec's texts."""
        self.assertEqual(realms.realm_problem(None, 7, 0), "Realm 7 not found")
        expired = RealmInfo(7, "x", "Normal", 100, 0, 0)
        self.assertEqual(realms.realm_problem(expired, 7, 101), "Realm 7 has expired")
        self.assertIsNone(realms.realm_problem(expired, 7, 100))
        zero = RealmInfo(7, "x", "Normal", 0, 0, 0)
        self.assertEqual(realms.realm_problem(zero, 7, 1), "Realm 7 has expired")
        suspended = RealmInfo(7, "x", "Suspended", None, 0, 0)
        self.assertEqual(
            realms.realm_problem(suspended, 7, 0),
            "Realm 7 is not in Normal status (current: Suspended)",
        )
        odd = RealmInfo(7, "x", "0", None, 0, 0)
        self.assertIsNone(realms.realm_problem(odd, 7, 0))
        self.assertEqual(odd.state(0), "active")


class RealmCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / realms.REALMS_DB
        migrate(self.path, realms.MIGRATIONS)
        conn = sqlite3.connect(self.path)
        cur = conn.cursor()
        realms.add_realm_txn(cur, 5, "five", None, 0)
        realms.add_acl_txn(cur, 5, "a:x", "b:y", True)
        realms.add_acl_txn(cur, 5, "a:x", "b:y", False)
        realms.add_acl_txn(cur, 5, "b:y", "a:x", False)
        conn.commit()
        conn.close()
        self.clock = MemoryReactorClock()
        self.cache = realms.RealmCache(Database(self.path, self.clock), self.clock)
        self.cache.load_sync(self.path)

    def test_lookups_from_memory(self) -> None:
        """Realm and ACL lookups answer from the loaded snapshot."""
        self.assertIsNone(self.cache.realm_problem(5))
        self.assertEqual(self.cache.realm_problem(6), "Realm 6 not found")
        info = self.cache.realm(5)
        assert info is not None
        self.assertEqual(info.name, "five")

    def test_first_acl_row_wins_and_default_deny(self) -> None:
        """The first row for a triple decides; no row means deny."""
        self.assertTrue(self.cache.acl_allowed(5, "a:x", "b:y"))
        self.assertFalse(self.cache.acl_allowed(5, "b:y", "a:x"))
        self.assertFalse(self.cache.acl_allowed(5, "a:x", "c:z"))
        self.assertFalse(self.cache.acl_allowed(6, "a:x", "b:y"))
