"""The actor_revocation store, the in-memory list, the change feed and the guard."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import realms
from actrix.core.interfaces import Claims, CredentialError
from actrix.core.revocations import (
    MAX_REASON,
    Revocation,
    RevocationList,
    RevokingValidator,
    add_revocation_txn,
    clean_reason,
    list_revocations_txn,
    purge_revocations_txn,
)
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase

U64_MAX = 2**64 - 1


def _revocation(serial: int = 0xABC, expires_at: int = 1000, **kw: Any) -> Revocation:
    fields: dict[str, Any] = {
        "realm_id": 7,
        "serial": serial,
        "actor_id": f"{serial:x}@7/acme:svc",
        "reason": "test",
        "revoked_at": 100,
        "expires_at": expires_at,
    }
    fields.update(kw)
    return Revocation(**fields)


class RevocationStoreTests(StoreTestBase):
    def setUp(self) -> None:
        self.conn = self.connection(realms.STORE)
        self.txn = self.conn.cursor()

    def test_add_list_and_purge(self) -> None:
        """Rows in force are listed; expired ones are left out, then purged."""
        add_revocation_txn(self.txn, _revocation(1, 500))
        add_revocation_txn(self.txn, _revocation(U64_MAX, 2000))
        listed = list_revocations_txn(self.txn, 600)
        self.assertEqual(listed, [_revocation(U64_MAX, 2000)])
        self.assertEqual(len(list_revocations_txn(self.txn, 0)), 2)
        self.assertEqual(purge_revocations_txn(self.txn, 600), 1)
        self.assertEqual(list_revocations_txn(self.txn, 0), listed)

    def test_revoking_again_keeps_the_later_expiry(self) -> None:
        """A second revocation replaces the reason; the expiry never shrinks."""
        add_revocation_txn(self.txn, _revocation(expires_at=2000, reason="a"))
        add_revocation_txn(self.txn, _revocation(expires_at=1500, reason="b"))
        (row,) = list_revocations_txn(self.txn, 0)
        self.assertEqual((row.reason, row.expires_at), ("b", 2000))
        add_revocation_txn(self.txn, _revocation(expires_at=3000, reason="c"))
        (row,) = list_revocations_txn(self.txn, 0)
        self.assertEqual((row.reason, row.expires_at), ("c", 3000))

    def test_feed_reports_another_connections_revocation(self) -> None:
        """A row committed elsewhere (the CLI) reaches the listeners on refresh."""
        database = self.inline_database(realms.STORE)
        clock = Clock()
        cache = realms.RealmCache(database, clock)
        cache.load_sync()
        revoked = RevocationList(database, clock)
        revoked.load_sync()
        cache.on_change(revoked.changed)
        seen: list[list[Revocation]] = []
        revoked.on_new(seen.append)
        add_revocation_txn(self.txn, _revocation())
        self.conn.commit()
        self.assertFalse(revoked.is_revoked((7, 0xABC)))
        self.successResultOf(Deferred.fromCoroutine(cache.refresh()))
        self.assertTrue(revoked.is_revoked((7, 0xABC)))
        self.assertEqual(seen, [[_revocation()]])
        # Reloading again announces nothing new.
        self.successResultOf(Deferred.fromCoroutine(revoked.reload()))
        self.assertEqual(len(seen), 1)

    def test_list_loads_revocations_in_force_and_purges(self) -> None:
        """A restart knows the rows in force; a purge drops expired ones."""
        add_revocation_txn(self.txn, _revocation(1, 50))
        add_revocation_txn(self.txn, _revocation(2, 200))
        self.conn.commit()
        clock = Clock()
        clock.advance(100)
        database = self.inline_database(realms.STORE)
        revoked = RevocationList(database, clock)
        revoked.load_sync()
        self.assertEqual(len(revoked), 1)
        self.assertTrue(revoked.is_revoked((7, 2)))
        self.assertFalse(revoked.is_revoked((7, 1)))
        clock.advance(150)
        self.successResultOf(Deferred.fromCoroutine(revoked.purge()))
        self.assertEqual(len(revoked), 0)
        self.assertEqual(database.run_sync(list_revocations_txn, 0), [])

    def test_revoke_writes_and_knows_at_once(self) -> None:
        """``revoke`` writes the row and answers whether it was new."""
        database = self.inline_database(realms.STORE)
        revoked = RevocationList(database, Clock())
        self.assertTrue(
            self.successResultOf(Deferred.fromCoroutine(revoked.revoke(_revocation())))
        )
        self.assertFalse(
            self.successResultOf(Deferred.fromCoroutine(revoked.revoke(_revocation())))
        )
        self.assertTrue(revoked.is_revoked((7, 0xABC)))
        self.assertEqual(len(database.run_sync(list_revocations_txn, 0)), 1)


class RevocationStoreOnSqlite(SqliteBackend, RevocationStoreTests):
    pass


class RevocationStoreOnPostgres(PostgresBackend, RevocationStoreTests):
    def test_revocation_bumps_the_change_counter(self) -> None:
        """The trigger makes a revocation a realm change every node reloads on."""
        before = realms._change_counter_txn(self.txn)
        add_revocation_txn(self.txn, _revocation())
        self.conn.commit()
        # INSERT ... ON CONFLICT fires the INSERT and the UPDATE statement trigger.
        self.assertGreater(realms._change_counter_txn(self.txn), before)


class _Validator:
    def __init__(self, claims: Claims) -> None:
        self.claims = claims

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        if encrypted_token == b"bad":
            raise CredentialError("decrypt", "bad token")
        return self.claims

    def validate_cached(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims | None:
        return self.claims

    def cached_until(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> tuple[Claims, float] | None:
        return None if encrypted_token == b"bad" else (self.claims, 500.0)


class _NoDatabase:
    dialect = "sqlite"


class GuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.revoked = RevocationList(_NoDatabase(), Clock())  # type: ignore[arg-type]  # never queried
        claims = Claims(7, "abc@7/acme:svc", 10**10, b"k" * 32)
        self.guard = RevokingValidator(_Validator(claims), self.revoked)

    def _validate(self, token: bytes = b"t") -> Claims:
        d = Deferred.fromCoroutine(self.guard.validate(token, 1, 7))
        return self.successResultOf(d)

    def test_tokens_of_other_actors_pass(self) -> None:
        """Until the actor is revoked, both entry points answer the inner claims."""
        self.revoked.add(_revocation(0xABD))
        self.assertEqual(self._validate().actor_id, "abc@7/acme:svc")
        self.assertIsNotNone(self.guard.validate_cached(b"t", 1, 7))

    def test_revoked_actor_is_refused_everywhere(self) -> None:
        """A revoked actor's token: ``revoked`` error, and no cached answer."""
        self.revoked.add(_revocation(0xABC))
        d = Deferred.fromCoroutine(self.guard.validate(b"t", 1, 7))
        error = self.failureResultOf(d, CredentialError).value
        self.assertEqual(
            (error.kind, error.reason, error.code), ("revoked", "identity revoked", 401)
        )
        self.assertIsNone(self.guard.validate_cached(b"t", 1, 7))

    def test_cached_until_passes_the_inner_answer_until_revoked(self) -> None:
        """Signaling's per-session answer comes through the guard (it was lost
        behind it, so every relay re-hashed its token); a revoked actor and an
        uncached token get None ("ask")."""
        found = self.guard.cached_until(b"t", 1, 7)
        self.assertEqual(found, (self.guard.inner.claims, 500.0))  # type: ignore[attr-defined]
        self.assertIsNone(self.guard.cached_until(b"bad", 1, 7))
        self.revoked.add(_revocation(0xABC))
        self.assertIsNone(self.guard.cached_until(b"t", 1, 7))

    def test_inner_errors_keep_their_kind(self) -> None:
        """A token the inner validator refuses keeps the inner error."""
        self.revoked.add(_revocation(0xABC))
        d = Deferred.fromCoroutine(self.guard.validate(b"bad", 1, 7))
        self.assertEqual(self.failureResultOf(d, CredentialError).value.kind, "decrypt")


class HelperTests(SynchronousTestCase):
    def test_clean_reason_is_one_bounded_line(self) -> None:
        """Whitespace runs fold to one space; the text is cut at MAX_REASON."""
        self.assertEqual(clean_reason("  a\n\tb  "), "a b")
        self.assertEqual(len(clean_reason("x" * 1000)), MAX_REASON)


class RaceTests(SqliteBackend):
    def test_reload_racing_a_revocation_keeps_it(self) -> None:
        """A reload whose query ran before this process revoked re-reads."""
        from tests.backends import HeldDatabase

        held = HeldDatabase(self.connection(realms.STORE), self.dialect)
        revoked = RevocationList(held, Clock())
        reload = Deferred.fromCoroutine(revoked.reload())  # its query is held
        write = Deferred.fromCoroutine(revoked.revoke(_revocation()))
        (query, read), (insert, written) = held.held
        held.held = []
        insert.callback(written)  # the write completes first...
        self.successResultOf(write)
        query.callback(read)  # ...then the older read, which lacks the row
        while held.held:
            held.release()
        self.successResultOf(reload)
        self.assertTrue(revoked.is_revoked((7, 0xABC)))
