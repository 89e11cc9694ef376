"""The ``actrix`` admin CLI on temp directories: realms, ACL, check, credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import sqlite3
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from actrix.cli import run, turn_rest_credential
from actrix.core.realms import STORE as REALM_STORE
from actrix.core.realms import realms_path
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase
from tests.daemon import config_text
from tests.pgcluster import PgCluster


class CliTestBase(StoreTestBase):
    """A config on this test's store and a way to run commands with it."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()
        self.db_dir = self.dir / "db"
        self.config = self.dir / "actrix.toml"
        self.config.write_text(config_text(self.db_dir, extra=self.storage_toml()))

    def cli(self, *argv: str, status: int = 0) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run(
            ["--busy-timeout", "0.2", *argv[:2], "-c", str(self.config), *argv[2:]]
            if argv[0] in ("realm", "acl")
            else [*argv],
            out,
            err,
        )
        self.assertEqual(code, status, f"{argv}: {out.getvalue()} {err.getvalue()}")
        return out.getvalue() + err.getvalue()


class RealmCliTests(CliTestBase):
    """Realm and ACL commands; the same on SQLite files and on PostgreSQL."""

    def test_realm_round_trip(self) -> None:
        """add, list, show, suspend, resume and remove work on one file."""
        self.assertTrue(self.cli("realm", "add", "--name", "a", "--id", "1001"))
        self.cli("realm", "add", "--name", "b")
        lines = self.cli("realm", "list").splitlines()
        self.assertEqual([line.split("\t")[0] for line in lines], ["1001", "1002"])
        self.assertIn("active", lines[0])
        self.cli("realm", "suspend", "1001")
        listed = json.loads(self.cli("realm", "list", "--json"))
        self.assertEqual(listed[0]["state"], "suspended")
        self.assertEqual(listed[0]["status"], "Suspended")
        self.cli("realm", "resume", "1001")
        shown = json.loads(self.cli("realm", "show", "1001", "--json"))
        self.assertEqual(shown["state"], "active")
        self.cli("realm", "remove", "1001")
        self.assertIn(
            "realm 1001 not found", self.cli("realm", "show", "1001", status=1)
        )

    def test_realm_expiry_state(self) -> None:
        """A realm past expires_at lists as expired."""
        self.cli("realm", "add", "--name", "old", "--id", "7", "--expires-at", "1")
        self.assertIn("expired", self.cli("realm", "list"))

    def test_add_if_missing_is_idempotent(self) -> None:
        """--if-missing succeeds when the realm exists; a plain add fails."""
        self.cli("realm", "add", "--name", "dev", "--id", "1", "--if-missing")
        self.cli("realm", "add", "--name", "dev", "--id", "1", "--if-missing")
        out = self.cli("realm", "add", "--name", "dev", "--id", "1", status=1)
        self.assertIn("realm 1 already exists", out)

    def test_acl_round_trip(self) -> None:
        """ACL rules are added, listed (also as JSON) and removed by id."""
        self.cli("realm", "add", "--name", "a", "--id", "3")
        out = self.cli(
            "acl",
            "add",
            "--realm",
            "3",
            "--from",
            "acme:c",
            "--to",
            "acme:s",
            "--allow",
        )
        rule_id = out.split("\t")[0]
        self.cli(
            "acl", "add", "--realm", "3", "--from", "acme:s", "--to", "acme:c", "--deny"
        )
        rows = json.loads(self.cli("acl", "list", "--json"))
        self.assertEqual([r["allow"] for r in rows], [True, False])
        self.cli("acl", "remove", rule_id)
        self.assertEqual(len(self.cli("acl", "list", "--realm", "3").splitlines()), 1)
        self.assertIn("not found", self.cli("acl", "remove", rule_id, status=1))

    def test_acl_add_keeps_one_row_and_deny_wins(self) -> None:
        """A second add for a triple changes its row; an allow never lifts a deny."""
        self.cli("realm", "add", "--name", "a", "--id", "3")
        add = ("acl", "add", "--realm", "3", "--from", "acme:c", "--to", "acme:s")
        first = self.cli(*add, "--allow").split("\t")[0]
        denied = self.cli(*add, "--deny")
        self.assertEqual(
            denied.split("\t")[:5], [first, "3", "acme:c", "acme:s", "deny"]
        )
        refused = self.cli(*add, "--allow", status=1)
        self.assertIn("remove it first", refused)
        rows = json.loads(self.cli("acl", "list", "--json"))
        self.assertEqual(
            [(r["rowid"], r["allow"], r["operator_allow"]) for r in rows],
            [(int(first), False, False)],
        )

    def test_acl_needs_existing_realm_and_type_keys(self) -> None:
        """ACL rules for unknown realms or malformed type keys are refused."""
        self.cli("realm", "add", "--name", "a", "--id", "3")
        self.assertIn(
            "realm 4 not found",
            self.cli(
                "acl",
                "add",
                "--realm",
                "4",
                "--from",
                "a:b",
                "--to",
                "c:d",
                "--allow",
                status=1,
            ),
        )
        self.assertIn(
            "--from",
            self.cli(
                "acl",
                "add",
                "--realm",
                "3",
                "--from",
                "nocolon",
                "--to",
                "c:d",
                "--allow",
                status=1,
            ),
        )


class RealmCliOnSqlite(SqliteBackend, RealmCliTests):
    pass


class RealmCliOnPostgres(PostgresBackend, RealmCliTests):
    def test_realm_list_on_an_empty_store(self) -> None:
        """A fresh PostgreSQL store lists no realms (the schema is created)."""
        self.assertEqual(self.cli("realm", "list"), "")


class CliTests(SqliteBackend, CliTestBase):
    """What only the SQLite backend or no store at all has."""

    def test_missing_database_is_a_clear_error(self) -> None:
        """Read commands do not create a database that is not there."""
        out = self.cli("realm", "list", status=1)
        self.assertIn("no realm database", out)
        self.assertFalse(self.db_dir.exists())

    def test_locked_database_is_a_clear_error(self) -> None:
        """A database held by another writer gives a one-line message."""
        self.cli("realm", "add", "--name", "a", "--id", "1")
        conn = sqlite3.connect(realms_path(self.db_dir), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            out = self.cli("realm", "suspend", "1", status=1)
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        self.assertIn("locked", out)

    def test_check_good_and_bad_configs(self) -> None:
        """check exits 0 on a valid file and 1 listing dotted keys otherwise."""
        self.assertIn("OK", self.cli("check", "-c", str(self.config)))
        bad = self.dir / "bad.toml"
        bad.write_text(
            config_text(self.db_dir).replace('realm = "actor-rtc.local"', "realm = 5")
        )
        self.assertIn(
            "turn.realm: expected a string", self.cli("check", "-c", str(bad), status=1)
        )
        self.assertIn(
            "cannot read", self.cli("check", "-c", str(self.dir / "nope"), status=1)
        )

    def test_check_creates_nothing(self) -> None:
        """Validating a config does not create the sqlite directory."""
        self.cli("check", "-c", str(self.config))
        self.assertFalse(self.db_dir.exists())

    def test_turn_credential(self) -> None:
        """REST credentials follow coturn's expiry:name and HMAC-SHA1 form."""
        username, password = turn_rest_credential("s3cret", "bob", 60, 1000)
        self.assertEqual(username, "1060:bob")
        expected = hmac.new(b"s3cret", b"1060:bob", hashlib.sha1).digest()
        self.assertEqual(base64.b64decode(password), expected)
        out = json.loads(
            self.cli("turn-credential", "-c", str(self.config), "--name", "x", "--json")
        )
        self.assertTrue(out["username"].endswith(":x"))

    def test_room_token_and_secret_rotation(self) -> None:
        """room-token mints a token the realm's secret verifies; rotation bumps kid."""
        from actrix.core import roomtokens
        from actrix.core.realms import current_room_secret_txn, realms_path
        from actrix.core.storage import connect_sync

        self.cli("realm", "add", "--name", "a", "--id", "101")
        c = str(self.config)
        out = json.loads(
            self.cli(
                "room-token",
                "-c",
                c,
                "--realm",
                "101",
                "--room",
                "team-*",
                "--role",
                "publisher",
                "--peer",
                "alice",
                "--ttl",
                "3600",
                "--max-uses",
                "5",
                "--json",
            )
        )
        claims, body, mac = roomtokens.parse(out["token"])
        self.assertEqual(
            (claims.role, claims.peer, claims.max_uses), ("sender", "alice", 5)
        )
        conn = connect_sync(realms_path(self.db_dir))
        try:
            secret = current_room_secret_txn(conn.cursor(), 101, 0)
        finally:
            conn.close()
        self.assertTrue(roomtokens.signature_valid(body, mac, secret.secret))
        self.assertIn(
            "kid 2 is current",
            self.cli("room-secret", "-c", c, "--realm", "101", "--rotate"),
        )
        self.cli("room-token", "-c", c, "--realm", "999", "--room", "x", status=1)
        self.cli(
            "room-token",
            "-c",
            c,
            "--realm",
            "101",
            "--room",
            "x",
            "--ttl",
            "5",
            status=1,
        )
        self.cli(
            "room-token",
            "-c",
            c,
            "--realm",
            "101",
            "--room",
            "x",
            "--role",
            "boss",
            status=1,
        )

    def test_turn_drain_creates_and_removes_the_flag(self) -> None:
        """turn drain creates sqlite_path/turn.draining; --cancel removes it."""
        flag = self.db_dir / "turn.draining"
        out = self.cli("turn", "drain", "-c", str(self.config))
        self.assertIn("TURN draining", out)
        self.assertTrue(flag.exists())
        self.cli("turn", "drain", "-c", str(self.config))  # idempotent
        self.assertIn(
            "cancelled", self.cli("turn", "drain", "--cancel", "-c", str(self.config))
        )
        self.assertFalse(flag.exists())
        self.cli("turn", "drain", "--cancel", "-c", str(self.config))

    def test_ks_generate_kek(self) -> None:
        """A KEK is 32 random bytes in hex or base64."""
        self.assertEqual(len(bytes.fromhex(self.cli("ks-generate-kek").strip())), 32)
        b64 = self.cli("ks-generate-kek", "--format", "base64").strip()
        self.assertEqual(len(base64.b64decode(b64)), 32)

    def test_status_unreachable(self) -> None:
        """status against a closed port exits 1 with a message."""
        out = self.cli(
            "status", "--url", "http://127.0.0.1:9", "--timeout", "1", status=1
        )
        self.assertIn("not reachable", out)


class CheckRuntimeTests(SynchronousTestCase):
    """``actrix check --runtime`` rejects what would stop the daemon at startup."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()

    def check(self, text: str) -> tuple[int, str]:
        config = self.dir / "c.toml"
        config.write_text(text)
        out, err = io.StringIO(), io.StringIO()
        code = run(["check", "--runtime", "-c", str(config)], out, err)
        return code, out.getvalue() + err.getvalue()

    def test_good_config_passes(self) -> None:
        """A config with free ports and a writable directory passes."""
        code, out = self.check(config_text(self.dir / "db"))
        self.assertEqual(code, 0, out)
        self.assertFalse((self.dir / "db").exists())

    def test_unwritable_sqlite_path(self) -> None:
        """A sqlite_path under a file is reported by key."""
        (self.dir / "file").write_text("")
        code, out = self.check(config_text(self.dir / "file" / "db"))
        self.assertEqual(code, 1)
        self.assertIn("sqlite_path:", out)

    def test_port_in_use(self) -> None:
        """A taken HTTP port is reported with its key."""
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        taken = blocker.getsockname()[1]
        text = config_text(self.dir / "db").replace(
            "port = 0\n", f"port = {taken}\n", 1
        )
        code, out = self.check(text)
        self.assertEqual(code, 1)
        self.assertIn(f"bind.http: cannot listen on 127.0.0.1:{taken}", out)

    def test_missing_tls_files(self) -> None:
        """Missing certificate files are reported with the path."""
        text = config_text(self.dir / "db").replace('env = "dev"', 'env = "test"') + (
            "\n[bind.https]\ndomain_name = 'x'\nadvertised_ip = '127.0.0.1'\n"
            "ip = '127.0.0.1'\nport = 0\ncert = '/nonexistent/c.pem'\n"
            "key = '/nonexistent/k.pem'\n"
        )
        code, out = self.check(text)
        self.assertEqual(code, 1)
        self.assertIn("bind.https: cert file /nonexistent/c.pem does not exist", out)

    def test_bad_configs_each_rejected(self) -> None:
        """Broken TOML, wrong types, missing and unknown keys all exit 1 by key."""
        base = config_text(self.dir / "db")
        cases = {
            "name = [": "invalid TOML",
            base.replace('name = "actrix-test"', "name = 5"): "name: expected a string",
            base.replace(
                'location_tag = "test"\n', ""
            ): "location_tag: missing required",
            base + "\nbogus = 1\n": "bogus: unknown key",
        }
        for text, expected in cases.items():
            code, out = self.check(text)
            self.assertEqual(code, 1, text)
            self.assertIn(expected, out)


class MigrateStoreTests(PostgresBackend):
    """``actrix migrate-store`` from a single node's files into PostgreSQL."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()
        self.db_dir = self.dir / "db"
        self.sqlite_config = self.dir / "sqlite.toml"
        self.sqlite_config.write_text(config_text(self.db_dir))
        self.pg_file = self.dir / "pg.toml"
        self.pg_file.write_text(config_text(self.db_dir, extra=self.storage_toml()))

    def run_cli(self, *argv: str, status: int = 0) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run(list(argv), out, err)
        self.assertEqual(code, status, f"{argv}: {out.getvalue()} {err.getvalue()}")
        return out.getvalue() + err.getvalue()

    def migrate(self, *extra: str, status: int = 0) -> str:
        return self.run_cli(
            "migrate-store",
            "--from",
            f"sqlite:{self.db_dir}",
            "--to",
            "postgresql:",
            "-c",
            str(self.pg_file),
            *extra,
            status=status,
        )

    def seed(self) -> None:
        """A single node's state: a realm with an ACL rule, two keys, an AIS key."""
        from actrix.ais.store import AIS_DB, CurrentKey, save_current_key_txn
        from actrix.ais.store import MIGRATIONS as AIS_MIGRATIONS
        from actrix.core.storage import connect_sync, migrate
        from actrix.ks.store import KS_DB, insert_key_txn
        from actrix.ks.store import MIGRATIONS as KS_MIGRATIONS

        c = ("-c", str(self.sqlite_config))
        self.run_cli("realm", "add", *c, "--name", "one", "--id", "7")
        self.run_cli(
            "acl", "add", *c, "--realm", "7", "--from", "a:b", "--to", "c:d", "--deny"
        )
        migrate(self.db_dir / KS_DB, KS_MIGRATIONS)
        conn = connect_sync(self.db_dir / KS_DB)
        insert_key_txn(conn.cursor(), "pub1", "sealed1", 1, 0)
        insert_key_txn(conn.cursor(), "pub2", "sealed2", 2, 0)
        conn.close()
        migrate(self.db_dir / AIS_DB, AIS_MIGRATIONS)
        conn = connect_sync(self.db_dir / AIS_DB)
        save_current_key_txn(
            conn.cursor(), CurrentKey(2, b"\x02" + bytes(32), 5, 0, 60)
        )
        conn.close()

    def test_copy_counts_and_result(self) -> None:
        """Rows are copied with their ids and counted; the CLI then reads them."""
        self.seed()
        out = self.migrate()
        self.assertIn("realm\t1\n", out)
        self.assertIn("actoracl\t1\n", out)
        self.assertIn("keys\t2\n", out)
        self.assertIn("current_key\t1\n", out)
        listed = json.loads(
            self.run_cli("realm", "list", "-c", str(self.pg_file), "--json")
        )
        self.assertEqual([(r["realm_id"], r["name"]) for r in listed], [(7, "one")])
        rows = json.loads(
            self.run_cli("acl", "list", "-c", str(self.pg_file), "--json")
        )
        self.assertEqual([(r["from_type"], r["allow"]) for r in rows], [("a:b", False)])

    def test_ids_continue_after_the_copied_ones(self) -> None:
        """New rows in PostgreSQL never reuse a copied id."""
        from actrix.ks.store import STORE as KS_STORE
        from actrix.ks.store import insert_key_txn

        self.seed()
        self.migrate()
        out = self.run_cli(
            "acl",
            "add",
            "-c",
            str(self.pg_file),
            "--realm",
            "7",
            "--from",
            "e:f",
            "--to",
            "c:d",
            "--allow",
        )
        self.assertEqual(out.split("\t")[0], "2")
        conn = self.connection(KS_STORE)
        self.assertEqual(insert_key_txn(conn.cursor(), "p", "s", 3, 0), 3)

    def test_rerun_is_idempotent_and_other_rows_need_force(self) -> None:
        """A repeated run changes nothing; a different target needs --force."""
        self.seed()
        self.migrate()
        self.assertIn("nothing copied", self.migrate())
        self.run_cli(
            "realm", "add", "-c", str(self.sqlite_config), "--name", "two", "--id", "8"
        )
        refused = self.migrate(status=1)
        self.assertIn("already holds rows", refused)
        self.assertIn("--force", refused)
        self.assertIn("realm\t2\n", self.migrate("--force"))
        self.assertIn("nothing copied", self.migrate())

    def test_dsn_target_and_bad_locations(self) -> None:
        """A bare DSN works (default schema prefix); wrong schemes are refused."""
        cluster = PgCluster.get()
        self.addCleanup(cluster.drop_schemas, "actrix_")
        self.seed()
        dsn = f"host={cluster.socket_dir} port={cluster.port} user=postgres"
        out = self.run_cli(
            "migrate-store",
            "--from",
            f"sqlite:{self.db_dir}",
            "--to",
            f"postgresql:{dsn}",
        )
        self.assertIn("keys\t2\n", out)
        bad = self.run_cli(
            "migrate-store", "--from", str(self.db_dir), "--to", "postgresql:", status=1
        )
        self.assertIn("expected sqlite:", bad)
        wrong_scheme = self.run_cli(
            "migrate-store",
            "--from",
            f"sqlite:{self.db_dir}",
            "--to",
            "postgres://actrix:hunter22@db/actrix",
            status=1,
        )
        self.assertIn("--to: expected postgresql:..., got postgres:...", wrong_scheme)
        self.assertNotIn("hunter22", wrong_scheme)
        unreachable = self.run_cli(
            "migrate-store",
            "--from",
            f"sqlite:{self.db_dir}",
            "--to",
            "postgresql:host=127.0.0.1 port=1 connect_timeout=1",
            status=1,
        )
        self.assertIn("storage.dsn: cannot connect", unreachable)
        self.assertNotIn("Traceback", unreachable)

    def test_check_runtime_connects(self) -> None:
        """check --runtime reaches PostgreSQL and refuses a newer schema."""
        self.assertIn("OK", self.run_cli("check", "--runtime", "-c", str(self.pg_file)))
        conn = self.connection(REALM_STORE)
        conn.cursor().execute("INSERT INTO schema_version (version) VALUES (99)")
        conn.commit()
        out = self.run_cli("check", "--runtime", "-c", str(self.pg_file), status=1)
        self.assertIn("newer than this actrix supports", out)
        wrong = (
            self.pg_file.read_text()
            .replace(f"port = {self.pg_config.port}", "port = 1")
            .replace(f'host = "{self.pg_config.host}"', 'host = "127.0.0.1"')
        )
        self.pg_file.write_text(wrong)
        out = self.run_cli("check", "--runtime", "-c", str(self.pg_file), status=1)
        self.assertIn("error: storage.dsn: cannot connect", out)
