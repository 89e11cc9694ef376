"""The realm/ACL store and the daemon's in-memory RealmCache."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

import psycopg2
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from actrix.core import realms
from actrix.core.interfaces import RealmInfo
from actrix.core.storage import StorageClosed, migrate
from tests.backends import HeldDatabase, PostgresBackend, SqliteBackend, StoreTestBase


class RealmStoreTests(StoreTestBase):
    def _memory(self) -> Any:
        return self.connection(realms.STORE).cursor()

    def test_add_and_list(self) -> None:
        """Realms get the next free id when none is given."""
        txn = self._memory()
        realms.add_realm_txn(txn, 1001, "a", None, 10)
        info = realms.add_realm_txn(txn, None, "b", 99, 10)
        self.assertEqual(info.realm_id, 1002)
        self.assertEqual(
            [r.realm_id for r in realms.list_realms_txn(txn)], [1001, 1002]
        )

    def test_duplicate_realm_rejected(self) -> None:
        """The same realm id cannot be added twice."""
        txn = self._memory()
        realms.add_realm_txn(txn, 1, "a", None, 10)
        self.assertRaises(
            realms.RealmError, realms.add_realm_txn, txn, 1, "b", None, 10
        )

    def test_status_and_remove(self) -> None:
        """Suspend/resume change status; remove deletes the realm and its ACL."""
        txn = self._memory()
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


class RealmStoreOnSqlite(SqliteBackend, RealmStoreTests):
    pass


class RealmStoreOnPostgres(PostgresBackend, RealmStoreTests):
    pass


class RealmCacheTests(StoreTestBase):
    def setUp(self) -> None:
        self.database = self.inline_database(realms.STORE)
        self.database.run_sync(self._seed_txn)
        self.clock = MemoryReactorClock()
        self.cache = realms.RealmCache(self.database, self.clock)
        self.cache.load_sync()

    @staticmethod
    def _seed_txn(cur: Any) -> None:
        realms.add_realm_txn(cur, 5, "five", None, 0)
        realms.add_acl_txn(cur, 5, "a:x", "b:y", True)
        realms.add_acl_txn(cur, 5, "b:y", "a:x", False)
        realms.replace_declared_acl_txn(cur, 5, "b:y", {"c:z": False})

    def test_lookups_from_memory(self) -> None:
        """Realm and ACL lookups answer from the loaded snapshot."""
        self.assertIsNone(self.cache.realm_problem(5))
        self.assertEqual(self.cache.realm_problem(6), "Realm 6 not found")
        info = self.cache.realm(5)
        assert info is not None
        self.assertEqual(info.name, "five")

    def test_acl_decisions_and_default_deny(self) -> None:
        """Each triple's decision comes from memory; no row means deny."""
        self.assertTrue(self.cache.acl_allowed(5, "a:x", "b:y"))
        self.assertFalse(self.cache.acl_allowed(5, "b:y", "a:x"))
        self.assertFalse(self.cache.acl_allowed(5, "c:z", "b:y"))
        self.assertFalse(self.cache.acl_allowed(5, "a:x", "c:z"))
        self.assertFalse(self.cache.acl_allowed(6, "a:x", "b:y"))

    def test_replace_updates_memory_at_once_and_skips_no_ops(self) -> None:
        """A registration's ACL shows at once; an identical one writes nothing."""
        database = self.database
        cache = realms.RealmCache(database, self.clock)
        cache.load_sync()
        replace = cache.replace_acl(5, "b:y", {"c:z": True, "d:w": True})
        self.successResultOf(Deferred.fromCoroutine(replace))
        self.assertTrue(cache.acl_allowed(5, "c:z", "b:y"))
        self.assertTrue(cache.acl_allowed(5, "d:w", "b:y"))
        self.assertTrue(cache.acl_allowed(5, "a:x", "b:y"))  # the operator's rule
        writes = database.runs
        again = cache.replace_acl(5, "b:y", {"d:w": True, "c:z": True})
        self.successResultOf(Deferred.fromCoroutine(again))
        self.assertEqual(database.runs, writes)
        narrower = cache.replace_acl(5, "b:y", {"d:w": False})
        self.successResultOf(Deferred.fromCoroutine(narrower))
        self.assertFalse(cache.acl_allowed(5, "c:z", "b:y"))
        self.assertFalse(cache.acl_allowed(5, "d:w", "b:y"))
        # A fresh load from the file agrees with what memory says.
        fresh = realms.RealmCache(database, self.clock)
        fresh.load_sync()
        for caller in ("a:x", "c:z", "d:w"):
            self.assertEqual(
                fresh.acl_allowed(5, caller, "b:y"), cache.acl_allowed(5, caller, "b:y")
            )

    def test_refresh_sees_another_connections_commit(self) -> None:
        """A realm suspended through another connection (the CLI) is seen on refresh."""
        other = self.connection(realms.STORE)
        realms.set_realm_status_txn(other.cursor(), 5, realms.STATUS_SUSPENDED, 1)
        other.commit()
        self.assertIsNone(self.cache.realm_problem(5))
        self.successResultOf(Deferred.fromCoroutine(self.cache.refresh()))
        self.assertIn("not in Normal status", self.cache.realm_problem(5) or "")
        runs = self.database.runs
        self.successResultOf(Deferred.fromCoroutine(self.cache.refresh()))
        self.assertEqual(self.database.runs, runs + 1)  # unchanged: no reload

    def test_changed_refreshes_at_once(self) -> None:
        """A change notification reloads the cache without waiting for the timer."""
        other = self.connection(realms.STORE)
        realms.set_realm_status_txn(other.cursor(), 5, realms.STATUS_SUSPENDED, 1)
        other.commit()
        self.cache.changed()
        self.assertIsNotNone(self.cache.realm_problem(5))

    def test_notifications_during_a_refresh_cause_one_more(self) -> None:
        """Changes announced while a refresh runs are read by one more refresh."""
        held = HeldDatabase(self.connection(realms.STORE), self.dialect)
        cache = realms.RealmCache(held, self.clock)
        cache.load_sync()

        def drain() -> None:
            while held.held:
                held.release()

        cache.changed()  # version differs from the startup load: reload
        cache.changed()
        cache.changed()
        drain()
        self.assertEqual(held.runs, 3)  # version + snapshot, then one version
        cache.changed()
        drain()
        self.assertEqual(held.runs, 4)  # nothing changed: the version only


class RealmCacheOnSqlite(SqliteBackend, RealmCacheTests):
    pass


class RealmCacheOnPostgres(PostgresBackend, RealmCacheTests):
    pass


def _rows(txn: Any, realm_id: int = 5) -> list[tuple[object, ...]]:
    """(from, to, decision, operator, declared) of a realm's rows, by id."""
    return [
        (r.from_type, r.to_type, r.allow, r.operator_allow, r.declared_allow)
        for r in realms.list_acl_txn(txn, realm_id)
    ]


class AclStoreTests(StoreTestBase):
    def setUp(self) -> None:
        self.txn = self.connection(realms.STORE).cursor()
        realms.add_realm_txn(self.txn, 5, "five", None, 0)

    def test_operator_rule_is_one_row_per_triple(self) -> None:
        """Adding the same operator rule twice keeps one row and its id."""
        first = realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        second = realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        self.assertEqual(first, second)
        self.assertEqual(_rows(self.txn), [("a:x", "b:y", True, True, None)])

    def test_operator_deny_beats_allow(self) -> None:
        """A deny replaces an operator allow; an allow never lifts a deny."""
        realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        realms.add_acl_txn(self.txn, 5, "a:x", "b:y", False)
        self.assertEqual(_rows(self.txn), [("a:x", "b:y", False, False, None)])
        with self.assertRaises(realms.RealmError) as caught:
            realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        self.assertIn("remove it first", str(caught.exception))
        self.assertEqual(_rows(self.txn), [("a:x", "b:y", False, False, None)])

    def test_registration_replaces_its_type_rules(self) -> None:
        """The newest registration of a type replaces that type's rules only."""
        replace = realms.replace_declared_acl_txn
        replace(self.txn, 5, "b:y", {"a:x": True, "c:z": True})
        replace(self.txn, 5, "d:w", {"a:x": True})
        rows = replace(self.txn, 5, "b:y", {"a:x": False})
        self.assertEqual([(r.from_type, r.allow) for r in rows], [("a:x", False)])
        self.assertEqual(
            sorted(_rows(self.txn)),
            [("a:x", "b:y", False, None, False), ("a:x", "d:w", True, None, True)],
        )
        for _ in range(40):  # re-registrations add nothing
            replace(self.txn, 5, "b:y", {"a:x": False, "c:z": True})
        self.assertEqual(len(_rows(self.txn)), 3)

    def test_deny_beats_allow_whatever_the_source_order(self) -> None:
        """Operator and registration: a deny from either decides, in any order."""
        realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        realms.replace_declared_acl_txn(self.txn, 5, "b:y", {"a:x": False})
        realms.replace_declared_acl_txn(self.txn, 5, "d:w", {"a:x": True})
        realms.add_acl_txn(self.txn, 5, "a:x", "d:w", False)
        self.assertEqual(
            _rows(self.txn),
            [("a:x", "b:y", False, True, False), ("a:x", "d:w", False, False, True)],
        )
        # The registration drops its deny: the operator's allow decides again.
        realms.replace_declared_acl_txn(self.txn, 5, "b:y", {})
        self.assertEqual(_rows(self.txn)[0], ("a:x", "b:y", True, True, None))

    def test_registration_never_lifts_an_operator_deny(self) -> None:
        """An operator deny stays whatever a registration declares."""
        realms.add_acl_txn(self.txn, 5, "a:x", "b:y", False)
        realms.replace_declared_acl_txn(self.txn, 5, "b:y", {"a:x": True})
        self.assertEqual(_rows(self.txn), [("a:x", "b:y", False, False, True)])

    def test_unique_index_refuses_a_second_row(self) -> None:
        """The schema itself holds one row per (realm, from, to)."""
        realms.add_acl_txn(self.txn, 5, "a:x", "b:y", True)
        with self.assertRaises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
            self.txn.execute(
                "INSERT INTO actoracl (realm_id, from_type, to_type, access,"
                " operator_access) VALUES (5, 'a:x', 'b:y', 0, 0)"
            )


class AclStoreOnSqlite(SqliteBackend, AclStoreTests):
    pass


class AclStoreOnPostgres(PostgresBackend, AclStoreTests):
    pass


class AclMigrationTests(SynchronousTestCase):
    def test_duplicates_collapse_and_deny_is_kept(self) -> None:
        """Migration 2 leaves one row per triple; any old deny wins, in any order."""
        path = Path(self.mktemp())
        conn = sqlite3.connect(path)
        conn.executescript(realms.MIGRATIONS.steps()[0][2])
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        old_rows = [
            (5, "a:x", "b:y", 1),  # 1
            (5, "a:x", "b:y", 0),  # 2: a later deny the old code ignored
            (5, "a:x", "b:y", 1),  # 3
            (5, "c:z", "b:y", 1),  # 4
            (5, "c:z", "b:y", 1),  # 5
            (6, "a:x", "b:y", 0),  # 6
            (5, "b:y", "a:x", 0),  # 7
            (5, "b:y", "a:x", 1),  # 8
        ] + [(5, "e:v", "b:y", 1)] * 100  # 9..108: a pile-up
        conn.executemany(
            "INSERT INTO actoracl (realm_id, from_type, to_type, access)"
            " VALUES (?, ?, ?, ?)",
            old_rows,
        )
        conn.commit()
        conn.close()
        self.assertEqual(migrate(path, realms.MIGRATIONS), realms.MIGRATIONS.latest)
        self.assertTrue(path.with_name(path.name + ".bak-v1").exists())
        conn = sqlite3.connect(path)
        rows = realms.list_acl_txn(conn.cursor())
        self.assertEqual(
            [(r.rowid, r.realm_id, r.from_type, r.to_type, r.allow) for r in rows],
            [
                (2, 5, "a:x", "b:y", False),
                (4, 5, "c:z", "b:y", True),
                (6, 6, "a:x", "b:y", False),
                (7, 5, "b:y", "a:x", False),
                (9, 5, "e:v", "b:y", True),
            ],
        )
        # Old denies became operator rules; old allows, declared ones.
        self.assertEqual(
            [(r.operator_allow, r.declared_allow) for r in rows],
            [(False, None), (None, True), (False, None), (False, None), (None, True)],
        )
        txn = conn.cursor()
        realms.replace_declared_acl_txn(txn, 5, "b:y", {"a:x": True})
        self.assertEqual(
            _rows(txn),
            [("a:x", "b:y", False, False, True), ("b:y", "a:x", False, False, None)],
        )
        conn.close()


class _ClosedDatabase:
    """A database the daemon has already closed (it is stopping)."""

    label = "closed"
    dialect = "sqlite"

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        raise StorageClosed("closed: database is closed")


class RealmCacheAtShutdownTests(TestCase):
    def test_refresh_after_close_is_quiet(self) -> None:
        """A change-feed refresh or a poll landing after the database closed
        (a stopping daemon) ends quietly: no error logged, nothing raised."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        cache = realms.RealmCache(cast(Any, _ClosedDatabase()), MemoryReactorClock())
        cache.changed()
        self.successResultOf(cache._tick())
        self.assertEqual([e for e in events if e.get("log_failure")], [])
        self.assertEqual(
            [
                e
                for e in events
                if e.get("log_level") in (LogLevel.warn, LogLevel.error)
            ],
            [],
        )
