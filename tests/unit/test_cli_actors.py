"""``actrix actor revoke`` / ``actor revoked`` on SQLite files and PostgreSQL."""

from __future__ import annotations

import json
import time

from actrix.core.actrid import actr_id_repr, new_actr_id
from tests.backends import PostgresBackend, SqliteBackend
from tests.unit.test_cli import CliTestBase

ACTOR = actr_id_repr(new_actr_id(1001, 0xBEEF, "acme", "svc"))


class ActorCliTests(CliTestBase):
    def actor(self, *argv: str, status: int = 0) -> str:
        return self.cli("actor", *argv, "-c", str(self.config), status=status)

    def test_revoke_and_list(self) -> None:
        """A revocation is stored for the AIS token lifetime and listed."""
        self.cli("realm", "add", "--name", "a", "--id", "1001")
        before = int(time.time())
        line = self.actor("revoke", ACTOR, "--reason", "lost\nlaptop")
        self.assertTrue(line.startswith(f"{ACTOR}\trevoked\tuntil="), line)
        self.assertTrue(line.rstrip().endswith("\tlost laptop"), line)
        (row,) = json.loads(self.actor("revoked", "--json"))
        self.assertEqual((row["realm_id"], row["serial"]), (1001, 0xBEEF))
        self.assertEqual(row["actor_id"], ACTOR)
        # The test config's [services.ais.server] token_ttl_secs = 3600.
        self.assertGreaterEqual(row["expires_at"], before + 3600)
        self.assertLessEqual(row["expires_at"], int(time.time()) + 3600)
        self.assertEqual(self.actor("revoked").count("\trevoked\t"), 1)

    def test_malformed_actor_id_is_refused(self) -> None:
        """A text that is no ActrId is a one-line error, nothing written."""
        self.cli("realm", "add", "--name", "a", "--id", "1001")
        for bad in ("beef", "beef@1001", "xyz@1001/acme:svc", "beef@1001/acme"):
            self.assertIn("actrix: ", self.actor("revoke", bad, status=1))
        self.assertEqual(self.actor("revoked"), "")


class ActorCliOnSqlite(SqliteBackend, ActorCliTests):
    pass


class ActorCliOnPostgres(PostgresBackend, ActorCliTests):
    pass
