"""Tests for actrix.core.credentials: the shared identity-token validator."""

from __future__ import annotations

import traceback
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import tokens
from actrix.core.credentials import InlineCrypto, TokenValidator
from actrix.core.interfaces import Claims, CredentialError, SecretKey
from tests.unit.ks.fakes import FakeKeys, deferred

NOW = 1_700_000_000
REALM = 1001


class CountingCrypto(InlineCrypto):
    """Inline crypto that counts calls."""

    calls = 0

    def run(self, fn: Any, *args: Any) -> Deferred[Any]:
        self.calls += 1
        return super().run(fn, *args)


class SlowKeys(FakeKeys):
    """KS lookups that wait until released."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[None]] = []

    async def secret_key(self, key_id: int) -> SecretKey | None:
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        await d
        return await super().secret_key(key_id)


class ValidatorTests(SynchronousTestCase):
    """Accept and every reject reason of signaling.md §4.2."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys()
        self.crypto = CountingCrypto()
        self.validator = TokenValidator(self.keys, self.clock, crypto=self.crypto)
        self.record = self.successResultOf(deferred(self.keys.generate_key()))

    def _token(
        self, realm: int = REALM, expr: int = NOW + 3600, key_id: int | None = None
    ) -> bytes:
        public = self.keys.publics[key_id or self.record.key_id]
        claims = Claims(realm, "1a@1001/acme:echo", expr, b"\x07" * 32)
        return tokens.encrypt_token(public, claims)

    def _validate(self, token: bytes, key_id: int = 1, realm: int = REALM) -> Claims:
        return self.successResultOf(
            deferred(self.validator.validate(token, key_id, realm))
        )

    def _reject(
        self, token: bytes, key_id: int = 1, realm: int = REALM
    ) -> CredentialError:
        failure = self.failureResultOf(
            deferred(self.validator.validate(token, key_id, realm)), CredentialError
        )
        error: CredentialError = failure.value
        self.assertEqual(error.code, 401)
        return error

    def test_accepts_valid_token(self) -> None:
        """A fresh token in the right realm yields its claims."""
        claims = self._validate(self._token())
        self.assertEqual(claims.actor_id, "1a@1001/acme:echo")
        self.assertEqual(claims.psk, b"\x07" * 32)
        self.assertFalse(claims.key_in_tolerance)

    def test_expired(self) -> None:
        """``now > expr_time`` is rejected; ``now == expr_time`` is not."""
        self._validate(self._token(expr=NOW))
        error = self._reject(self._token(expr=NOW - 1))
        self.assertEqual((error.kind, error.reason), ("expired", "Token has expired"))

    def test_realm_mismatch(self) -> None:
        """A token for another realm is rejected."""
        error = self._reject(self._token(realm=7))
        self.assertEqual(error.reason, "Token decryption failed: Realm ID mismatch")

    def test_tampered_token(self) -> None:
        """A modified ciphertext is a decryption error."""
        token = bytearray(self._token())
        token[-1] ^= 1
        error = self._reject(bytes(token))
        self.assertEqual(error.kind, "decrypt")
        self.assertTrue(
            error.reason.startswith("Token decryption failed: Decryption error: ")
        )

    def test_truncated_token(self) -> None:
        """A truncated token is a decryption error."""
        self.assertEqual(self._reject(self._token()[:80]).kind, "decrypt")

    def test_not_claims(self) -> None:
        """A token whose plaintext is not claims is a deserialization error."""
        import ecies

        token = bytes(ecies.encrypt(self.keys.publics[1], b'{"hello":1}'))
        error = self._reject(token)
        self.assertEqual(error.kind, "claims")
        self.assertTrue(
            error.reason.startswith("Token decryption failed: Deserialization error: ")
        )

    def test_unknown_key_negative_cache(self) -> None:
        """An unknown key is rejected and KS is asked again only after 10 s."""
        error = self._reject(self._token(), key_id=99)
        self.assertEqual(error.kind, "unknown_key")
        self.assertEqual(
            error.reason, "Token decryption failed: KS error: Key not found: 99"
        )
        self._reject(self._token(), key_id=99)
        self.assertEqual(self.keys.secret_calls, 1)
        self.clock.advance(11)
        self._reject(self._token(), key_id=99)
        self.assertEqual(self.keys.secret_calls, 2)

    def test_ks_error(self) -> None:
        """A failing KS is a KS error, and is not cached."""
        self.keys.fail = True
        error = self._reject(self._token())
        self.assertEqual(
            (error.kind, error.reason),
            ("ks_error", "Token decryption failed: KS error: connection refused"),
        )
        self.keys.fail = False
        self._validate(self._token())

    def test_key_beyond_tolerance(self) -> None:
        """A cached key past expiry + tolerance is no longer used."""
        self.keys.secrets[1] = attrs.evolve(
            self.keys.secrets[1], expires_at=NOW + 10, tolerance_seconds=20
        )
        self._validate(self._token(expr=NOW + 3600))
        self.clock.advance(31)
        error = self._reject(self._token(expr=NOW + 3600))
        self.assertEqual(
            error.reason, "Token decryption failed: KS error: Key 1 has expired"
        )

    def test_key_in_tolerance_flag(self) -> None:
        """Between expiry and expiry + tolerance the claims are flagged."""
        self.keys.secrets[1] = attrs.evolve(
            self.keys.secrets[1], expires_at=NOW + 10, tolerance_seconds=20
        )
        token = self._token()
        self.assertFalse(self._validate(token).key_in_tolerance)
        self.clock.advance(15)
        self.assertTrue(self._validate(token).key_in_tolerance)

    def test_cached_token_skips_decryption(self) -> None:
        """A repeated token is not decrypted again but expiry is re-checked."""
        token = self._token(expr=NOW + 5)
        self._validate(token)
        self._validate(token)
        self.assertEqual(self.crypto.calls, 1)
        self.assertEqual(self.keys.secret_calls, 1)
        self.clock.advance(6)
        self.assertEqual(self._reject(token).kind, "expired")

    def test_cached_token_rechecks_realm(self) -> None:
        """A cached token presented for another realm is rejected."""
        token = self._token()
        self._validate(token)
        self.assertEqual(self._reject(token, realm=2).kind, "realm_mismatch")

    def test_token_cache_is_bounded(self) -> None:
        """The token LRU holds at most ``max_tokens`` entries."""
        validator = TokenValidator(self.keys, self.clock, max_tokens=2)
        for _ in range(4):
            self.successResultOf(deferred(validator.validate(self._token(), 1, REALM)))
        self.assertEqual(len(validator._tokens), 2)

    def test_concurrent_misses_share_one_fetch(self) -> None:
        """Two validations waiting on one key cause one KS call."""
        keys = SlowKeys()
        self.successResultOf(deferred(keys.generate_key()))
        validator = TokenValidator(keys, self.clock)
        public = keys.publics[1]
        token = tokens.encrypt_token(public, Claims(REALM, "a", NOW + 60, b"1" * 32))
        first = deferred(validator.validate(token, 1, REALM))
        second = deferred(validator.validate(token, 1, REALM))
        self.assertEqual(len(keys.waiting), 1)
        keys.waiting[0].callback(None)
        self.assertEqual(self.successResultOf(first).actor_id, "a")
        self.assertEqual(self.successResultOf(second).actor_id, "a")
        self.assertEqual(keys.secret_calls, 1)

    def test_concurrent_miss_failure_reaches_waiters(self) -> None:
        """A KS failure during a shared fetch rejects every waiter."""
        keys = SlowKeys()
        self.successResultOf(deferred(keys.generate_key()))
        keys.fail = True
        validator = TokenValidator(keys, self.clock)
        first = deferred(validator.validate(b"x" * 200, 1, REALM))
        second = deferred(validator.validate(b"x" * 200, 1, REALM))
        keys.waiting[0].callback(None)
        for d in (first, second):
            self.assertEqual(
                self.failureResultOf(d, CredentialError).value.kind, "ks_error"
            )

    def test_waiters_never_share_an_exception(self) -> None:
        """Each waiter of a failed shared fetch gets its own, shallow exception."""
        keys = SlowKeys()
        self.successResultOf(deferred(keys.generate_key()))
        keys.fail = True
        validator = TokenValidator(keys, self.clock)
        waiting = [
            deferred(validator.validate(b"x" * 200, 1, REALM)) for _ in range(50)
        ]
        keys.waiting[0].callback(None)
        errors = [self.failureResultOf(d, CredentialError).value for d in waiting]
        self.assertEqual(len({id(e) for e in errors}), 50)
        depths = {len(list(traceback.walk_tb(e.__traceback__))) for e in errors[1:]}
        # A shared object would gain every earlier waiter's frames (50+ deep).
        self.assertLess(max(depths), 10)

    def test_unexpected_fetch_error_releases_key(self) -> None:
        """A KS lookup failing with an unexpected error does not wedge that key."""
        keys = SlowKeys()
        self.successResultOf(deferred(keys.generate_key()))
        validator = TokenValidator(keys, self.clock)
        token = tokens.encrypt_token(
            keys.publics[1], Claims(REALM, "a", NOW + 60, b"1" * 32)
        )
        first = deferred(validator.validate(token, 1, REALM))
        second = deferred(validator.validate(token, 1, REALM))
        keys.waiting[0].errback(RuntimeError("bug"))
        for d in (first, second):
            self.failureResultOf(d, RuntimeError)
        third = deferred(validator.validate(token, 1, REALM))
        keys.waiting[1].callback(None)
        self.assertEqual(self.successResultOf(third).actor_id, "a")

    def test_concurrent_key_lookups_are_bounded(self) -> None:
        """Lookups of too many distinct key ids at once are refused, not queued."""
        keys = SlowKeys()
        validator = TokenValidator(keys, self.clock, max_pending=3)
        pending = [
            deferred(validator.validate(b"x" * 200, i, REALM)) for i in (1, 2, 3)
        ]
        refused = deferred(validator.validate(b"x" * 200, 4, REALM))
        error = self.failureResultOf(refused, CredentialError).value
        self.assertEqual(error.kind, "ks_error")
        self.assertEqual(len(keys.waiting), 3)
        for waiter in keys.waiting:
            waiter.callback(None)
        for d in pending:
            self.assertEqual(
                self.failureResultOf(d, CredentialError).value.kind, "unknown_key"
            )
        self.assertEqual(validator._pending, {})


class ChooseCryptoTests(SynchronousTestCase):
    """The startup decision between inline decryption and the thread pool."""

    def test_fast_decrypt_runs_inline(self) -> None:
        """Within the budget no thread pool is created."""
        from twisted.application.service import MultiService

        from actrix.core.credentials import choose_crypto

        background = MultiService()
        runner = choose_crypto(Clock(), background, budget=1.0)
        self.assertIsInstance(runner, InlineCrypto)
        self.assertEqual(list(background), [])

    def test_slow_decrypt_uses_one_shared_pool(self) -> None:
        """Over the budget one pool is created and shared."""
        from twisted.application.service import MultiService

        from actrix.core.credentials import CryptoThreads, choose_crypto

        background = MultiService()
        first = choose_crypto(Clock(), background, budget=0.0)
        second = choose_crypto(Clock(), background, budget=0.0)
        self.assertIsInstance(first, CryptoThreads)
        self.assertIs(first, second)
        self.assertEqual(list(background), [first])

    def test_unstarted_pool_runs_inline(self) -> None:
        """A pool that is not running computes on the caller's thread."""
        from actrix.core.credentials import CryptoThreads

        pool = CryptoThreads(Clock())
        self.assertEqual(self.successResultOf(pool.run(sum, [1, 2])), 3)


class StatsTests(SynchronousTestCase):
    """Validator counters reach Prometheus."""

    def test_collect(self) -> None:
        """Each counter is exported under actrix_credentials_*."""
        from actrix.core.credentials import ValidatorStats

        stats = ValidatorStats(accepted=3, rejected=1)
        families = {m.name: m.samples[0].value for m in stats.collect()}
        self.assertEqual(families["actrix_credentials_accepted"], 3)
        self.assertEqual(families["actrix_credentials_rejected"], 1)
