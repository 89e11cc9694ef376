"""Tests for actrix.core.auth and actrix.core.nonces: nonce-auth credentials."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.auth import (
    AuthError,
    CredentialFormatError,
    NonceCredential,
    NonceVerifier,
    compute_signature,
    credential_from_json,
    credential_from_text,
    parse_timestamp,
    sign_credential,
)
from actrix.core.nonces import (
    MIGRATIONS,
    STORE,
    NonceStore,
    _consume_nonce_txn,
    _consume_nonces_txn,
    _delete_expired_nonces_txn,
)
from actrix.core.storage import StorageUnavailable
from tests.backends import PostgresBackend, SqliteBackend, StoreTestBase
from tests.unit.ks.fakes import MemoryNonces, deferred

NOW = 1_700_000_000
SECRET = b"test-psk"
NONCE = "550e8400-e29b-41d4-a716-446655440000"


class SignatureTests(SynchronousTestCase):
    """The HMAC over timestamp ‖ nonce ‖ payload (ks.md §1.1)."""

    def test_vector_generate_key(self) -> None:
        """The ks.md generate_key vector."""
        self.assertEqual(
            compute_signature(SECRET, NOW, NONCE, "generate_key"),
            "3zPEKG+fmM46BBV5cn+8oOkO2gTW979bZRkMG/6ynzM=",
        )

    def test_vector_get_secret_key(self) -> None:
        """The ks.md get_secret_key:7 vector."""
        self.assertEqual(
            compute_signature(SECRET, NOW, NONCE, "get_secret_key:7"),
            "6qxPNvZJcSpjp1OJAA0ZOs41GXWvqm6NRi5BMbU3bXI=",
        )

    def test_sign_uses_uuid4_nonce(self) -> None:
        """A signed credential carries a canonical UUIDv4 and the floor of now."""
        credential = sign_credential(SECRET, "generate_key", NOW + 0.9)
        self.assertEqual(credential.timestamp, NOW)
        self.assertEqual(str(uuid.UUID(credential.nonce)), credential.nonce)
        self.assertEqual(uuid.UUID(credential.nonce).version, 4)

    def test_repr_hides_signature(self) -> None:
        """The repr never shows the signature."""
        credential = sign_credential(SECRET, "generate_key", NOW)
        self.assertNotIn(credential.signature, repr(credential))


class ParseTests(SynchronousTestCase):
    """Credential objects from JSON."""

    def test_round_trip(self) -> None:
        """The header form parses back to the same credential."""
        credential = sign_credential(SECRET, "x", NOW)
        self.assertEqual(credential_from_text(credential.to_header()), credential)

    def test_missing_field(self) -> None:
        """A missing field is a format error."""
        with self.assertRaises(CredentialFormatError):
            credential_from_json({"timestamp": 1, "nonce": "n"})

    def test_wrong_types(self) -> None:
        """String timestamps, booleans, negatives and non-string nonces fail."""
        bad: object
        for bad in (
            {"timestamp": "1", "nonce": "n", "signature": "s"},
            {"timestamp": True, "nonce": "n", "signature": "s"},
            {"timestamp": -1, "nonce": "n", "signature": "s"},
            {"timestamp": 1 << 64, "nonce": "n", "signature": "s"},
            {"timestamp": 1, "nonce": 5, "signature": "s"},
            [],
        ):
            with self.assertRaises(CredentialFormatError):
                credential_from_json(bad)

    def test_query_timestamp_digits_bounded(self) -> None:
        """A query timestamp of thousands of digits is a format error."""
        for text in ("9" * 5000, "1" * 21, str(1 << 64)):
            with self.assertRaises(CredentialFormatError):
                parse_timestamp(text)
        self.assertEqual(parse_timestamp("0" * 30 + "17"), 17)

    def test_not_json(self) -> None:
        """Text that is not JSON is a format error."""
        with self.assertRaises(CredentialFormatError):
            credential_from_text("{nope")

    def test_deeply_nested_json(self) -> None:
        """JSON nested past the recursion limit is a format error."""
        with self.assertRaises(CredentialFormatError):
            credential_from_text("[" * 5000)

    def test_lone_surrogates(self) -> None:
        """A nonce or signature that is not valid Unicode is a format error."""
        for text in (
            '{"timestamp": 1, "nonce": "\\ud800", "signature": "s"}',
            '{"timestamp": 1, "nonce": "n", "signature": "\\udfff"}',
        ):
            with self.assertRaises(CredentialFormatError):
                credential_from_text(text)


class VerifierTests(SynchronousTestCase):
    """Window, signature, replay and storage failures."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.nonces = MemoryNonces()
        self.verifier = NonceVerifier(SECRET, self.nonces, self.clock)

    def _verify(self, credential: NonceCredential, payload: str) -> None:
        self.successResultOf(deferred(self.verifier.verify(credential, payload)))

    def _refused(self, credential: NonceCredential, payload: str) -> str:
        failure = self.failureResultOf(
            deferred(self.verifier.verify(credential, payload)), AuthError
        )
        return str(failure.value.kind)

    def test_accepts_fresh_credential(self) -> None:
        """A correct credential is accepted and its nonce consumed."""
        credential = sign_credential(SECRET, "generate_key", NOW)
        self._verify(credential, "generate_key")
        self.assertIn(credential.nonce, self.nonces.taken)

    def test_window_edges(self) -> None:
        """60 s either way is accepted, 61 s is refused."""
        for offset in (-60, 60):
            self._verify(sign_credential(SECRET, "p", NOW + offset), "p")
        for offset in (-61, 61):
            credential = sign_credential(SECRET, "p", NOW + offset)
            self.assertEqual(self._refused(credential, "p"), "window")
            self.assertNotIn(credential.nonce, self.nonces.taken)

    def test_bad_signature_keeps_nonce(self) -> None:
        """A wrong signature is refused without consuming the nonce."""
        good = sign_credential(SECRET, "p", NOW)
        forged = NonceCredential(
            good.timestamp, good.nonce, "AAAA" + good.signature[4:]
        )
        self.assertEqual(self._refused(forged, "p"), "signature")
        self._verify(good, "p")

    def test_wrong_payload(self) -> None:
        """A credential signed for another payload is refused."""
        credential = sign_credential(SECRET, "generate_key", NOW)
        self.assertEqual(self._refused(credential, "get_secret_key:1"), "signature")

    def test_non_ascii_signature(self) -> None:
        """A non-ASCII signature is refused, not crashed on."""
        credential = NonceCredential(NOW, "n", "é" * 44)
        self.assertEqual(self._refused(credential, "p"), "signature")

    def test_lone_surrogate_nonce(self) -> None:
        """A nonce that cannot be UTF-8 encoded is refused, not crashed on."""
        credential = NonceCredential(NOW, "\ud800", "s")
        self.assertEqual(self._refused(credential, "p"), "signature")
        self.assertEqual(self.nonces.taken, {})

    def test_replay(self) -> None:
        """The same credential twice is a replay."""
        credential = sign_credential(SECRET, "p", NOW)
        self._verify(credential, "p")
        self.assertEqual(self._refused(credential, "p"), "replay")

    def test_storage_error(self) -> None:
        """A failing nonce store is a storage error."""
        self.nonces.fail = True
        self.assertEqual(
            self._refused(sign_credential(SECRET, "p", NOW), "p"), "storage"
        )

    def test_unreachable_store(self) -> None:
        """An unreachable nonce database is its own kind (HTTP 503)."""
        self.nonces.error = StorageUnavailable("postgresql schema x: connection lost")
        self.assertEqual(
            self._refused(sign_credential(SECRET, "p", NOW), "p"), "unavailable"
        )


class NonceStoreTests(StoreTestBase):
    """The nonce table."""

    def setUp(self) -> None:
        self.conn = self.connection(STORE)

    def test_consume_once(self) -> None:
        """A nonce is taken once until it expires, then can be taken again."""
        cursor = self.conn.cursor()
        self.assertTrue(_consume_nonce_txn(cursor, "n1", NOW, 300))
        self.assertFalse(_consume_nonce_txn(cursor, "n1", NOW + 299, 300))
        self.assertTrue(_consume_nonce_txn(cursor, "n1", NOW + 300, 300))

    def test_cleanup(self) -> None:
        """Cleanup deletes expired rows only."""
        cursor = self.conn.cursor()
        _consume_nonce_txn(cursor, "old", NOW, 300)
        _consume_nonce_txn(cursor, "new", NOW + 200, 300)
        self.assertEqual(_delete_expired_nonces_txn(cursor, NOW + 300), 1)
        self.assertFalse(_consume_nonce_txn(cursor, "new", NOW + 300, 300))
        self.assertTrue(_consume_nonce_txn(cursor, "old", NOW + 300, 300))

    def test_batch_answers_in_arrival_order(self) -> None:
        """A batch is taken in nonce order but answered in the callers' order."""
        cursor = self.conn.cursor()
        _consume_nonce_txn(cursor, "m", NOW, 300)
        items = [("z", NOW, 300), ("m", NOW, 300), ("a", NOW, 300), ("z", NOW, 300)]
        self.assertEqual(_consume_nonces_txn(cursor, items), [True, False, True, False])

    def test_second_connection_is_refused(self) -> None:
        """A nonce committed through one connection is refused through another."""
        _consume_nonce_txn(self.conn.cursor(), "shared", NOW, 300)
        self.conn.commit()
        other = self.connection(STORE)
        self.assertFalse(_consume_nonce_txn(other.cursor(), "shared", NOW, 300))


class NonceStoreOnSqlite(SqliteBackend, NonceStoreTests):
    pass


class NonceStoreOnPostgres(PostgresBackend, NonceStoreTests):
    def test_concurrent_insert_waits_and_loses(self) -> None:
        """Two nodes taking one nonce at once: the second waits, then is refused."""
        first, second = self.connection(STORE), self.connection(STORE)
        self.assertTrue(_consume_nonce_txn(first.cursor(), "race", NOW, 300))
        outcome: list[bool] = []
        racer = threading.Thread(
            target=lambda: outcome.append(
                _consume_nonce_txn(second.cursor(), "race", NOW, 300)
            )
        )
        racer.start()
        racer.join(0.3)
        self.assertTrue(racer.is_alive())  # blocked on the uncommitted row
        first.commit()
        racer.join(5)
        self.assertEqual(outcome, [False])


class _HeldDatabase:
    """Runs transactions on :memory: but answers only when released."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        for _, _, sql in MIGRATIONS.steps():
            self.conn.executescript(sql)
        self.held: list[tuple[Deferred[Any], Any]] = []
        self.fail = False

    async def run(self, fn: Any, *args: Any) -> Any:
        d: Deferred[Any] = Deferred()
        result = fn(self.conn.cursor(), *args)
        self.held.append((d, result))
        return await d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            if self.fail:
                d.errback(sqlite3.OperationalError("disk I/O error"))
            else:
                d.callback(result)


class GroupCommitTests(SynchronousTestCase):
    """NonceStore batches nonces that arrive while a transaction is in flight."""

    def setUp(self) -> None:
        self.db = _HeldDatabase()
        self.store = NonceStore(cast(Any, self.db))

    def test_batches_and_duplicates(self) -> None:
        """Waiting nonces go in one transaction; a duplicate in it is refused."""
        first = deferred(self.store.consume("a", NOW, 300))
        second = deferred(self.store.consume("b", NOW, 300))
        third = deferred(self.store.consume("b", NOW, 300))
        self.assertEqual(len(self.db.held), 1)
        self.db.release()
        self.assertTrue(self.successResultOf(first))
        self.assertEqual(len(self.db.held), 1)  # b and b together
        self.db.release()
        self.assertTrue(self.successResultOf(second))
        self.assertFalse(self.successResultOf(third))

    def test_failure_reaches_batch(self) -> None:
        """A failed transaction fails every nonce in it, and the next works."""
        self.db.fail = True
        first = deferred(self.store.consume("a", NOW, 300))
        self.db.release()
        self.failureResultOf(first, sqlite3.OperationalError)
        self.db.fail = False
        later = deferred(self.store.consume("c", NOW, 300))
        self.db.release()
        self.assertTrue(self.successResultOf(later))
