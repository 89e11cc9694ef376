"""Tests for actrix.ks.kek and the startup KEK check."""

from __future__ import annotations

import base64
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from actrix.core.config import KsConfig, Secret
from actrix.core.storage import Database
from actrix.ks import kek as kek_mod
from actrix.ks.service import check_kek_sync
from actrix.ks.store import STORE, insert_key_txn
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase

KEK = bytes(range(32))
SECRET_B64 = base64.b64encode(b"\x11" * 32).decode()


class ParseTests(SynchronousTestCase):
    """KEK text formats."""

    def test_hex_and_base64(self) -> None:
        """64 hex characters and padded or unpadded base64 decode to the key."""
        self.assertEqual(kek_mod.parse_kek(KEK.hex()), KEK)
        self.assertEqual(kek_mod.parse_kek(KEK.hex().upper() + "\n"), KEK)
        b64 = base64.b64encode(KEK).decode()
        self.assertEqual(kek_mod.parse_kek(b64), KEK)
        self.assertEqual(kek_mod.parse_kek(b64.rstrip("=")), KEK)

    def test_rejects_other_formats(self) -> None:
        """Short, long and non-key text is refused without echoing it."""
        for bad in (
            "",
            "abc",
            KEK.hex()[:-2],
            base64.b64encode(bytes(31)).decode(),
            "!" * 44,
        ):
            with self.assertRaises(kek_mod.KekError) as ctx:
                kek_mod.parse_kek(bad)
            if bad:
                self.assertNotIn(bad, str(ctx.exception))


class LoadTests(SynchronousTestCase):
    """Source priority: file > env > inline."""

    def test_priority(self) -> None:
        """The file wins over the variable, which wins over the inline value."""
        path = Path(self.mktemp())
        path.write_text(KEK.hex() + "\n")
        other = bytes(32).hex()
        env = {"ACTRIX_KEK": bytes([1] * 32).hex()}
        config = KsConfig(kek=Secret(other), kek_env="ACTRIX_KEK", kek_file=path)
        self.assertEqual(kek_mod.load_kek(config, env), KEK)
        config = KsConfig(kek=Secret(other), kek_env="ACTRIX_KEK")
        self.assertEqual(kek_mod.load_kek(config, env), bytes([1] * 32))
        self.assertEqual(kek_mod.load_kek(KsConfig(kek=Secret(other)), {}), bytes(32))
        self.assertIsNone(kek_mod.load_kek(KsConfig(), {}))

    def test_missing_sources(self) -> None:
        """An unset variable or unreadable file is an error naming the key."""
        with self.assertRaises(kek_mod.KekError) as ctx:
            kek_mod.load_kek(KsConfig(kek_env="NOPE"), {})
        self.assertIn("services.ks.kek_env", str(ctx.exception))
        with self.assertRaises(kek_mod.KekError):
            kek_mod.load_kek(KsConfig(kek_file=Path(self.mktemp())), {})


class SealTests(SynchronousTestCase):
    """AES-256-GCM sealing."""

    def test_round_trip(self) -> None:
        """Sealed text opens with the same KEK, with a fresh nonce each time."""
        sealed = kek_mod.seal(KEK, SECRET_B64)
        self.assertNotEqual(sealed, kek_mod.seal(KEK, SECRET_B64))
        self.assertEqual(kek_mod.unseal(KEK, sealed), SECRET_B64)

    def test_wrong_kek(self) -> None:
        """Another KEK cannot open it."""
        with self.assertRaises(kek_mod.KekError):
            kek_mod.unseal(bytes(32), kek_mod.seal(KEK, SECRET_B64))


class StartupCheckTests(StoreTestBase):
    """check_kek_sync refuses a KEK that does not match the stored keys."""

    def _db(self, stored: str | None) -> Database:
        database = self.inline_database(STORE)
        database.run_sync(lambda txn: txn.execute("DELETE FROM keys"))
        if stored is not None:
            database.run_sync(insert_key_txn, "pub", stored, 1, 0)
        return database

    def test_empty_store_accepts_anything(self) -> None:
        """With no keys any configuration starts."""
        check_kek_sync(self._db(None), KEK)
        check_kek_sync(self._db(None), None)

    def test_matching_kek(self) -> None:
        """The right KEK (or none for plaintext rows) starts."""
        check_kek_sync(self._db(kek_mod.seal(KEK, SECRET_B64)), KEK)
        check_kek_sync(self._db(SECRET_B64), None)

    def test_wrong_kek_refused(self) -> None:
        """A wrong KEK is refused."""
        with self.assertRaises(kek_mod.KekError) as ctx:
            check_kek_sync(self._db(kek_mod.seal(KEK, SECRET_B64)), bytes(32))
        self.assertIn("wrong", str(ctx.exception))

    def test_missing_kek_refused(self) -> None:
        """Sealed rows without a configured KEK are refused."""
        with self.assertRaises(kek_mod.KekError):
            check_kek_sync(self._db(kek_mod.seal(KEK, SECRET_B64)), None)

    def test_kek_on_plaintext_refused(self) -> None:
        """A KEK on a store of plaintext secrets is refused."""
        with self.assertRaises(kek_mod.KekError):
            check_kek_sync(self._db(SECRET_B64), KEK)


class StartupCheckOnSqlite(SqliteBackend, StartupCheckTests):
    pass


class StartupCheckOnPostgres(PostgresBackend, StartupCheckTests):
    pass
