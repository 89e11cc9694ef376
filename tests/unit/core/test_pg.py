"""The PostgreSQL engine against a real server: dialect, migrations, errors."""

from __future__ import annotations

import psycopg2
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.pg import (
    connect_sync,
    describe_error,
    migrate_pg,
    schema_name,
    to_pyformat,
)
from actrix.core.settings import PostgresConfig
from actrix.core.storage import MigrationSet, StorageError, StoreSpec, translate_ddl
from tests.pgcluster import PASSWORD, PgCluster


class FakeMigrations(MigrationSet):
    """A migration set given in memory, with optional PostgreSQL variants."""

    def __init__(
        self, steps: list[tuple[int, str, str]], variants: dict[int, str] | None = None
    ) -> None:
        object.__setattr__(self, "package", "fake")
        object.__setattr__(self, "directory", "migrations")
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_variants", variants or {})

    def steps(self) -> list[tuple[int, str, str]]:
        return list(self._steps)  # type: ignore[attr-defined]  # set in __init__

    def variants(self) -> dict[int, str]:
        return dict(self._variants)  # type: ignore[attr-defined]  # set in __init__


V1 = (1, "0001_init.sql", "CREATE TABLE t (a INTEGER PRIMARY KEY AUTOINCREMENT);")
V2 = (
    2,
    "0002_more.sql",
    "ALTER TABLE t ADD COLUMN b BLOB;\nINSERT INTO t (b) VALUES (NULL);",
)
BROKEN = (2, "0002_broken.sql", "ALTER TABLE t ADD COLUMN c TEXT;\nNOT SQL;")


def _spec(
    *steps: tuple[int, str, str], variants: dict[int, str] | None = None
) -> StoreSpec:
    return StoreSpec("x.db", "x", FakeMigrations(list(steps), variants))


class DialectTests(SynchronousTestCase):
    def test_ddl_substitutions(self) -> None:
        """SQLite types become their PostgreSQL counterparts, ids BIGSERIAL."""
        self.assertEqual(
            translate_ddl(
                "id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, b BLOB, r REAL"
            ),
            "id BIGSERIAL PRIMARY KEY, n BIGINT, b BYTEA, r DOUBLE PRECISION",
        )

    def test_placeholders_and_percent(self) -> None:
        """``?`` becomes ``%s`` and a literal ``%`` is doubled."""
        self.assertEqual(
            to_pyformat("SELECT ? WHERE x LIKE 'a%'"), "SELECT %s WHERE x LIKE 'a%%'"
        )

    def test_variant_replaces_a_step(self) -> None:
        """A step's PostgreSQL variant is used instead of the translated file."""
        spec = _spec(V1, V2, variants={2: "-- nothing here"})
        steps = spec.migrations.steps_for("postgresql")
        self.assertEqual(steps[1][1:], ("0002_more.postgresql.sql", "-- nothing here"))
        self.assertIn("BIGSERIAL", steps[0][2])
        self.assertEqual(spec.migrations.steps_for("sqlite"), [V1, V2])

    def test_variant_of_unknown_step_refused(self) -> None:
        """A variant without its shared step is a packaging error."""
        with self.assertRaises(StorageError):
            _spec(V1, variants={2: "SELECT 1"}).migrations.steps_for("postgresql")

    def test_shipped_variants_match_their_steps(self) -> None:
        """Every shipped PostgreSQL variant belongs to a shipped step."""
        from actrix.storecopy import ALL_STORES

        for spec in ALL_STORES:
            steps = spec.migrations.steps_for("postgresql")
            self.assertEqual(len(steps), spec.migrations.latest)


class PgMigrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        cluster = PgCluster.get()
        self.config = cluster.config()
        self.addCleanup(cluster.drop_schemas, self.config.schema_prefix)

    def version(self, spec: StoreSpec) -> int:
        conn = connect_sync(self.config, schema_name(self.config, spec))
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT MAX(version) FROM schema_version")
                row = cur.fetchone()
                assert row is not None
                return int(row[0])
        finally:
            conn.close()

    def test_fresh_schema_then_upgrade(self) -> None:
        """A new schema is created at the latest version; a later step is added."""
        self.assertEqual(migrate_pg(self.config, _spec(V1)), 1)
        self.assertEqual(migrate_pg(self.config, _spec(V1, V2)), 2)
        self.assertEqual(migrate_pg(self.config, _spec(V1, V2)), 2)
        self.assertEqual(self.version(_spec(V1)), 2)

    def test_newer_schema_refused(self) -> None:
        """A schema from a newer actrix is refused with the key and versions."""
        migrate_pg(self.config, _spec(V1, V2))
        with self.assertRaises(StorageError) as cm:
            migrate_pg(self.config, _spec(V1))
        self.assertIn("newer than this actrix supports (1)", str(cm.exception))
        self.assertTrue(str(cm.exception).startswith("storage: "))

    def test_failed_migration_rolls_back(self) -> None:
        """A failing step leaves the schema as it was (transactional DDL)."""
        migrate_pg(self.config, _spec(V1))
        with self.assertRaises(StorageError) as cm:
            migrate_pg(self.config, _spec(V1, BROKEN))
        self.assertIn("0002_broken.sql failed (rolled back)", str(cm.exception))
        self.assertEqual(self.version(_spec(V1)), 1)
        conn = connect_sync(self.config, schema_name(self.config, _spec(V1)))
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = ? AND table_name = 't'",
                    (schema_name(self.config, _spec(V1)),),
                )
                self.assertEqual([r[0] for r in cur.fetchall()], ["a"])
        finally:
            conn.close()

    def test_failed_first_migration_leaves_no_schema(self) -> None:
        """Even the schema itself is rolled back when the first step fails."""
        broken = (1, "0001_broken.sql", "NOT SQL;")
        with self.assertRaises(StorageError):
            migrate_pg(self.config, _spec(broken))
        conn = PgCluster.get().connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM pg_namespace WHERE nspname = %s",
                    (schema_name(self.config, _spec(broken)),),
                )
                self.assertEqual(cur.fetchone(), (0,))
        finally:
            conn.close()


class ConnectErrorTests(SynchronousTestCase):
    """Startup errors are one line naming the key, never the password."""

    def setUp(self) -> None:
        self.cluster = PgCluster.get()

    def _error(self, config: PostgresConfig) -> str:
        with self.assertRaises(StorageError) as cm:
            migrate_pg(config, _spec(V1))
        return str(cm.exception)

    def test_wrong_password(self) -> None:
        """A wrong password names storage.password and does not repeat it."""
        message = self._error(self.cluster.tcp_config("not-the-password"))
        self.assertTrue(message.startswith("storage.password: "), message)
        self.assertNotIn("not-the-password", message)
        self.assertNotIn("\n", message)

    def test_right_password_over_tcp(self) -> None:
        """The password reaches the server when it is right."""
        config = self.cluster.tcp_config(PASSWORD)
        self.addCleanup(self.cluster.drop_schemas, config.schema_prefix)
        self.assertEqual(migrate_pg(config, _spec(V1)), 1)

    def test_unknown_database(self) -> None:
        """A misspelt database name names storage.dbname."""
        message = self._error(self.cluster.config(dbname="postgers"))
        self.assertTrue(message.startswith("storage.dbname: "), message)

    def test_a_lost_connection_blames_no_setting(self) -> None:
        """Once connected, a failure is libpq's first line without a key."""
        error = psycopg2.OperationalError(
            "server closed the connection unexpectedly\n\tThis probably means..."
        )
        self.assertEqual(
            describe_error(error, connecting=False),
            "server closed the connection unexpectedly",
        )
        self.assertTrue(describe_error(error).startswith("storage.dsn: "))

    def test_nothing_listening(self) -> None:
        """An unreachable server names storage.dsn in one line."""
        message = self._error(
            self.cluster.config(host="127.0.0.1", port=1, connect_timeout=1)
        )
        self.assertTrue(message.startswith("storage.dsn: cannot connect"), message)
        self.assertNotIn("\n", message)
