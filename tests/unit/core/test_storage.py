"""Migrations: fresh files, upgrades with a backup, newer schemas refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.storage import (
    MigrationSet,
    RerunWhileChanged,
    StorageClosed,
    StorageError,
    StorageUnavailable,
    connect_sync,
    ensure_directory,
    migrate,
)


class FakeMigrations(MigrationSet):
    """A migration set whose steps are given in memory."""

    def __init__(self, steps: list[tuple[int, str, str]]) -> None:
        object.__setattr__(self, "package", "fake")
        object.__setattr__(self, "directory", "migrations")
        object.__setattr__(self, "_steps", steps)

    def steps(self) -> list[tuple[int, str, str]]:
        return list(self._steps)  # type: ignore[attr-defined]  # set in __init__


V1 = (1, "0001_init.sql", "CREATE TABLE t (a INTEGER);\nINSERT INTO t VALUES (1);")
V2 = (2, "0002_more.sql", "ALTER TABLE t ADD COLUMN b TEXT;\nUPDATE t SET b = 'x';")
BROKEN = (2, "0002_broken.sql", "ALTER TABLE t ADD COLUMN c TEXT;\nNOT SQL;")


class MigrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "x.db"

    def version(self) -> int:
        conn = sqlite3.connect(self.path)
        try:
            return int(
                conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            )
        finally:
            conn.close()

    def test_fresh_file_gets_every_migration(self) -> None:
        """A new file is created at the latest version."""
        self.assertEqual(migrate(self.path, FakeMigrations([V1, V2])), 2)
        self.assertEqual(self.version(), 2)
        self.assertFalse(list(self.dir.glob("*.bak-*")))

    def test_upgrade_keeps_a_backup(self) -> None:
        """Upgrading an existing schema first copies the file aside."""
        migrate(self.path, FakeMigrations([V1]))
        migrate(self.path, FakeMigrations([V1, V2]))
        backup = self.dir / "x.db.bak-v1"
        self.assertTrue(backup.exists())
        conn = sqlite3.connect(backup)
        self.assertEqual(conn.execute("SELECT * FROM t").fetchall(), [(1,)])
        conn.close()
        conn = sqlite3.connect(self.path)
        self.assertEqual(conn.execute("SELECT a, b FROM t").fetchall(), [(1, "x")])
        conn.close()

    def test_up_to_date_file_is_untouched(self) -> None:
        """Running migrations again changes nothing and makes no backup."""
        migrate(self.path, FakeMigrations([V1, V2]))
        migrate(self.path, FakeMigrations([V1, V2]))
        self.assertFalse(list(self.dir.glob("*.bak-*")))

    def test_newer_schema_refused(self) -> None:
        """A file from a newer actrix is refused and left as it is."""
        migrate(self.path, FakeMigrations([V1, V2]))
        before = self.path.read_bytes()
        with self.assertRaises(StorageError) as cm:
            migrate(self.path, FakeMigrations([V1]))
        self.assertIn("newer than this actrix", str(cm.exception))
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.path.read_bytes(), before)

    def test_failed_migration_rolls_back(self) -> None:
        """A failing step leaves the schema at the previous version."""
        migrate(self.path, FakeMigrations([V1]))
        with self.assertRaises(StorageError) as cm:
            migrate(self.path, FakeMigrations([V1, BROKEN]))
        self.assertIn("0002_broken.sql failed", str(cm.exception))
        self.assertEqual(self.version(), 1)
        conn = sqlite3.connect(self.path)
        columns = [r[1] for r in conn.execute("PRAGMA table_info(t)")]
        conn.close()
        self.assertEqual(columns, ["a"])

    def test_real_migration_sets_are_in_sequence(self) -> None:
        """Every shipped migration set is numbered 1..N without gaps."""
        from actrix.core.realms import MIGRATIONS

        self.assertGreaterEqual(MIGRATIONS.latest, 1)

    def test_out_of_sequence_files_rejected(self) -> None:
        """A gap in the numbering is an error."""
        pkg = MigrationSet("tests.unit.core", "fake_migrations_pkg")
        with self.assertRaises(StorageError):
            pkg.steps()

    def test_connection_pragmas(self) -> None:
        """Connections use WAL, foreign keys and a busy timeout."""
        migrate(self.path, FakeMigrations([V1]))
        conn = connect_sync(self.path)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(conn.execute("PRAGMA foreign_keys").fetchone()[0], 1)
        self.assertEqual(conn.execute("PRAGMA busy_timeout").fetchone()[0], 5000)
        conn.close()

    def test_unwritable_directory(self) -> None:
        """A directory that cannot be created is reported by name."""
        blocker = self.dir / "file"
        blocker.write_text("")
        with self.assertRaises(StorageError) as cm:
            ensure_directory(blocker / "sub")
        self.assertIn("sqlite_path", str(cm.exception))


class RerunWhileChangedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runs: list[Deferred[None]] = []
        self.rerun = RerunWhileChanged(self.reload, "reloading things")

    async def reload(self) -> None:
        d: Deferred[None] = Deferred()
        self.runs.append(d)
        await d

    def test_changes_during_a_run_cause_one_more(self) -> None:
        """Three announcements during a run: one more run after it, not three."""
        self.rerun.changed()
        for _ in range(3):
            self.rerun.changed()
        self.assertEqual(len(self.runs), 1)
        self.runs[0].callback(None)
        self.assertEqual(len(self.runs), 2)
        self.runs[1].callback(None)
        self.assertEqual(len(self.runs), 2)
        self.rerun.changed()  # idle again: a new run at once
        self.assertEqual(len(self.runs), 3)

    def test_errors_are_logged_and_the_store_closing_ends_quietly(self) -> None:
        """A failing run is logged and does not wedge it; StorageClosed is silent."""
        self.rerun.changed()
        self.runs[0].errback(RuntimeError("boom"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.rerun.changed()
        self.rerun.changed()
        self.runs[1].errback(StorageClosed("closed"))
        self.assertEqual(len(self.runs), 2)  # no rerun after the store closed
        self.rerun.changed()
        self.runs[2].errback(StorageUnavailable("down"))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.rerun.changed()
        self.assertEqual(len(self.runs), 4)
