"""``actrix admin-token`` on both engines, and the ``[admin]`` config rules."""

from __future__ import annotations

import io
import json
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from actrix.admin import store as admin_store
from actrix.cli import run
from actrix.core.config import ConfigError, parse_config
from actrix.core.settings import AdminBind
from tests.backends import (
    InlineDatabase,
    PostgresBackend,
    SqliteBackend,
    StoreTestBase,
)
from tests.daemon import _merge, config_text


class AdminTokenCliTests(StoreTestBase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()
        self.config = self.dir / "actrix.toml"
        self.config.write_text(config_text(self.dir / "db", extra=self.storage_toml()))

    def cli(self, *argv: str, status: int = 0) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run(
            ["admin-token", argv[0], "-c", str(self.config), *argv[1:]], out, err
        )
        self.assertEqual(code, status, f"{argv}: {out.getvalue()} {err.getvalue()}")
        return out.getvalue() + err.getvalue()

    def store(self) -> Any:
        """The store the CLI wrote (the same schema on PostgreSQL)."""
        return self.inline_database(admin_store.STORE)

    def test_create_list_revoke(self) -> None:
        """A token is printed once, verifies, lists without its secret, revokes."""
        text = self.cli("create", "--name", "ops").splitlines()[0]
        self.assertTrue(text.startswith("adm_"))
        made = json.loads(
            self.cli("create", "--name", "viewer", "--read-only", "--json")
        )
        self.assertTrue(made["read_only"])
        db = self.store()
        self.assertEqual(db.run_sync(admin_store.verify_token_txn, text, 1).name, "ops")
        listed = self.cli("list")
        self.assertNotIn(text, listed)
        self.assertNotIn(made["token"], listed)
        self.assertIn("viewer\tread-only\tactive", listed)
        rows = json.loads(self.cli("list", "--json"))
        self.assertEqual([r["name"] for r in rows], ["ops", "viewer"])
        self.assertIn("revoked", self.cli("revoke", "ops"))
        self.assertIsNone(db.run_sync(admin_store.verify_token_txn, text, 2))
        self.assertIn("no active admin token", self.cli("revoke", "ops", status=1))
        self.assertIn("exists", self.cli("create", "--name", "viewer", status=1))
        self.assertIn("printable", self.cli("create", "--name", " ", status=1))


class AdminTokenCliOnSqlite(SqliteBackend, AdminTokenCliTests):
    def store(self) -> Any:
        conn = sqlite3.connect(str(self.dir / "db" / admin_store.ADMIN_DB))
        self.addCleanup(conn.close)
        return InlineDatabase(conn, "sqlite")

    def test_list_before_any_database(self) -> None:
        """Listing before anything created the store is a clear error."""
        self.assertIn("no admin database", self.cli("list", status=1))


class AdminTokenCliOnPostgres(PostgresBackend, AdminTokenCliTests):
    pass


def _data(overrides: str) -> dict[str, Any]:
    data = tomllib.loads(config_text(Path("/tmp/actrix-test")))
    _merge(data, tomllib.loads(overrides))
    return data


class AdminConfigTests(SynchronousTestCase):
    def problems(self, overrides: str) -> list[str]:
        try:
            parse_config(_data(overrides))
        except ConfigError as e:
            return e.problems
        return []

    def test_defaults(self) -> None:
        """Off by default; enabled alone listens on 127.0.0.1:8090."""
        settings = parse_config(_data(""))
        self.assertFalse(settings.admin.enabled)
        self.assertIsNone(settings.admin_bind)
        settings = parse_config(_data("[admin]\nenabled = true"))
        self.assertEqual(settings.admin_bind, AdminBind())
        self.assertEqual(
            (settings.admin_bind.ip, settings.admin_bind.port),  # type: ignore[union-attr]
            ("127.0.0.1", 8090),
        )
        self.assertEqual(settings.admin.session_ttl, 8 * 3600)

    def test_main_site_only(self) -> None:
        """on_main_site without a bind.admin table means no extra listener."""
        settings = parse_config(_data("[admin]\nenabled = true\non_main_site = true"))
        self.assertIsNone(settings.admin_bind)
        settings = parse_config(
            _data(
                "[admin]\nenabled = true\non_main_site = true\n[bind.admin]\nport = 9"
            )
        )
        self.assertEqual(settings.admin_bind.port, 9)  # type: ignore[union-attr]

    def test_bad_values(self) -> None:
        """Types, ranges, unknown keys and half a TLS pair are refused by key."""
        for overrides, expected in (
            ("[admin]\nenabled = 1", "admin.enabled: expected a boolean"),
            ("[admin]\nsession_ttl = 5", "admin.session_ttl: must be >= 60"),
            ("[admin]\nlogin_max_failures = 0", "admin.login_max_failures"),
            ("[admin]\ncolour = 1", "admin.colour: unknown key"),
            ("[bind.admin]\nip = 'here'", "bind.admin.ip: not an IP address"),
            ("[bind.admin]\nport = 70000", "bind.admin.port: must be <= 65535"),
            ("[bind.admin]\ncert = 'c.pem'", "bind.admin.cert: cert and key"),
        ):
            found = self.problems(overrides)
            self.assertTrue(any(expected in p for p in found), (expected, found))

    def test_network_listener_needs_tls_outside_dev(self) -> None:
        """A non-loopback admin listener without TLS is refused unless env=dev."""
        overrides = "[admin]\nenabled = true\n[bind.admin]\nip = '0.0.0.0'\n"
        self.assertEqual(self.problems(overrides), [])
        data = _data(overrides)
        data["env"] = "test"
        data["bind"]["https"] = {
            "domain_name": "x",
            "advertised_ip": "127.0.0.1",
            "ip": "127.0.0.1",
            "port": 0,
            "cert": "c.pem",
            "key": "k.pem",
        }
        try:
            parse_config(data)
        except ConfigError as e:
            self.assertTrue(any("bind.admin.ip" in p for p in e.problems), e.problems)
        else:
            self.fail("accepted a clear-text admin listener on 0.0.0.0 in test env")
        data["bind"]["admin"]["cert"] = "c.pem"
        data["bind"]["admin"]["key"] = "k.pem"
        parse_config(data)

    def test_on_main_site_needs_a_site(self) -> None:
        """on_main_site without any HTTP service is refused."""
        data = tomllib.loads(config_text(Path("/tmp/actrix-test"), enable=6))
        _merge(data, tomllib.loads("[admin]\nenabled = true\non_main_site = true"))
        del data["bind"]["http"]
        with self.assertRaises(ConfigError) as caught:
            parse_config(data)
        self.assertIn("admin.on_main_site", caught.exception.problems[0])


class CheckRuntimeAdminTests(SynchronousTestCase):
    def test_taken_admin_port(self) -> None:
        """check --runtime reports a taken bind.admin port by key."""
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        taken = blocker.getsockname()[1]
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        config = directory / "c.toml"
        config.write_text(
            config_text(directory / "db")
            + f"\n[admin]\nenabled = true\n[bind.admin]\nport = {taken}\n"
        )
        out, err = io.StringIO(), io.StringIO()
        code = run(["check", "--runtime", "-c", str(config)], out, err)
        self.assertEqual(code, 1)
        self.assertIn(f"bind.admin: cannot listen on 127.0.0.1:{taken}", out.getvalue())
