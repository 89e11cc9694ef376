"""Tests for TokenValidator.validate_cached, the synchronous token-cache fast path."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import tokens
from actrix.core.credentials import TokenValidator
from actrix.core.interfaces import Claims, CredentialError
from tests.unit.ks.fakes import FakeKeys, deferred

NOW = 1_700_000_000
REALM = 1001


class ValidateCachedTests(SynchronousTestCase):
    """validate_cached answers only what validate would accept without waiting."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys()
        self.validator = TokenValidator(self.keys, self.clock)
        self.record = self.successResultOf(deferred(self.keys.generate_key()))
        self.key_id = self.record.key_id

    def token(self, expr: int = NOW + 3600) -> bytes:
        claims = Claims(REALM, "1a@1001/acme:echo", expr, b"\x07" * 32)
        return tokens.encrypt_token(self.keys.publics[self.key_id], claims)

    def validate(self, token: bytes) -> Claims:
        return self.successResultOf(
            deferred(self.validator.validate(token, self.key_id, REALM))
        )

    def test_miss_before_first_validation(self) -> None:
        """A token never validated (and an unknown key) is not answered."""
        token = self.token()
        self.assertIsNone(self.validator.validate_cached(token, self.key_id, REALM))
        self.assertIsNone(self.validator.validate_cached(token, 999, REALM))
        self.assertEqual(self.validator.stats.decryptions, 0)

    def test_hit_after_validation(self) -> None:
        """After validate, the same token is answered at once, without decrypting."""
        token = self.token()
        claims = self.validate(token)
        cached = self.validator.validate_cached(token, self.key_id, REALM)
        self.assertEqual(cached, claims)
        self.assertEqual(self.validator.stats.decryptions, 1)
        self.assertEqual(self.validator.stats.token_hits, 1)

    def test_other_realm_or_token_is_a_miss(self) -> None:
        """A realm mismatch or another token falls back to validate."""
        token = self.token()
        self.validate(token)
        self.assertIsNone(self.validator.validate_cached(token, self.key_id, 7))
        other = self.token(expr=NOW + 60)
        self.assertIsNone(self.validator.validate_cached(other, self.key_id, REALM))

    def test_expired_token_is_a_miss(self) -> None:
        """Once the token's expiry passes, the fast path no longer answers."""
        token = self.token(expr=NOW + 10)
        self.validate(token)
        self.clock.advance(10)
        self.assertIsNotNone(self.validator.validate_cached(token, self.key_id, REALM))
        self.clock.advance(1)
        self.assertIsNone(self.validator.validate_cached(token, self.key_id, REALM))

    def test_cached_until_is_the_first_change(self) -> None:
        """``cached_until`` holds until token expiry, or the key's tolerance
        period starts, or (inside it) the key stops being usable."""
        token = self.token(expr=NOW + 3600)
        self.validate(token)
        found = self.validator.cached_until(token, self.key_id, REALM)
        assert found is not None
        self.assertEqual(found[1], float(NOW + 3600))  # this key never expires
        self.keys.secrets[self.key_id] = attrs.evolve(
            self.keys.secrets[self.key_id], expires_at=NOW + 100, tolerance_seconds=50
        )
        fresh = TokenValidator(self.keys, self.clock)
        self.successResultOf(deferred(fresh.validate(token, self.key_id, REALM)))
        found = fresh.cached_until(token, self.key_id, REALM)
        assert found is not None
        self.assertEqual(found[1], float(NOW + 100))  # tolerance starts
        self.clock.advance(120)
        found = fresh.cached_until(token, self.key_id, REALM)
        assert found is not None
        self.assertTrue(found[0].key_in_tolerance)
        self.assertEqual(found[1], float(NOW + 150))  # key unusable
        self.assertIsNone(fresh.cached_until(token, self.key_id, 7))

    def test_key_past_tolerance_is_a_miss(self) -> None:
        """A cached token of a key beyond expiry + tolerance is not answered."""
        self.keys.secrets[self.key_id] = attrs.evolve(
            self.keys.secrets[self.key_id], expires_at=NOW + 100, tolerance_seconds=50
        )
        token = self.token(expr=NOW + 3600)
        self.validate(token)
        self.clock.advance(120)
        in_tolerance = self.validator.validate_cached(token, self.key_id, REALM)
        assert in_tolerance is not None
        self.assertTrue(in_tolerance.key_in_tolerance)
        self.clock.advance(31)
        self.assertIsNone(self.validator.validate_cached(token, self.key_id, REALM))


class RememberTests(SynchronousTestCase):
    """Tokens the in-process AIS issued are validated without decrypting."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys()
        self.validator = TokenValidator(self.keys, self.clock)
        record = self.successResultOf(deferred(self.keys.generate_key()))
        self.key_id = record.key_id

    def issue(self, expr: int) -> tuple[bytes, Claims]:
        claims = Claims(REALM, "1a@1001/acme:echo", expr, b"\x07" * 32)
        token = tokens.encrypt_token(self.keys.publics[self.key_id], claims)
        self.validator.remember(self.key_id, token, claims)
        return token, claims

    def test_remembered_token_validates_without_decryption(self) -> None:
        """A remembered token's first validation uses the claims it was issued with."""
        token, claims = self.issue(NOW + 3600)
        validated = self.validator.validate(token, self.key_id, REALM)
        self.assertEqual(self.successResultOf(deferred(validated)), claims)
        self.assertEqual(self.validator.stats.decryptions, 0)
        other_realm = deferred(self.validator.validate(token, self.key_id, 7))
        failure = self.failureResultOf(other_realm, CredentialError)
        self.assertEqual(failure.value.kind, "realm_mismatch")

    def test_remembered_claims_still_expire(self) -> None:
        """A remembered token past its expiry is refused like any other."""
        token, _ = self.issue(NOW + 10)
        self.clock.advance(11)
        failure = self.failureResultOf(
            deferred(self.validator.validate(token, self.key_id, REALM)),
            CredentialError,
        )
        self.assertEqual(failure.value.kind, "expired")
