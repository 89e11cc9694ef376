"""Tests for actrix.ais.service: issuing, refreshing and key management."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.ais.serials import EPOCH_MS, SerialGenerator, decompose
from actrix.ais.service import IdentityIssuer
from actrix.ais.store import MIGRATIONS, CurrentKey, CurrentKeyStore
from actrix.core import tokens
from actrix.core.actrid import actr_id_repr
from actrix.proto import actr_pb2
from tests.unit.ks.fakes import FakeKeys, SyncDatabase, deferred

NOW = 1_700_000_000


def register_request(realm: int = 1001) -> actr_pb2.RegisterRequest:
    """A RegisterRequest for acme:echo:1.0 in ``realm``."""
    return actr_pb2.RegisterRequest(
        actr_type=actr_pb2.ActrType(manufacturer="acme", name="echo", version="1.0"),
        realm=actr_pb2.Realm(realm_id=realm),
    )


class IssuerTests(SynchronousTestCase):
    """register/refresh and the current key."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys(expires_at=NOW + 3600, tolerance=600)
        self.db = SyncDatabase(MIGRATIONS)
        self.issuer = self._issuer()

    def _issuer(self) -> IdentityIssuer:
        return IdentityIssuer(
            self.keys,
            CurrentKeyStore(self.db.database()),
            self.clock,
            SerialGenerator(lambda: int(self.clock.seconds() * 1000), worker=9),
            token_ttl_secs=3600,
            heartbeat_interval_secs=30,
        )

    def _register(self, request: actr_pb2.RegisterRequest) -> actr_pb2.RegisterResponse:
        return self.successResultOf(deferred(self.issuer.register(request)))

    def test_register(self) -> None:
        """A registration yields an ActrId, a decryptable token and a PSK."""
        response = self._register(register_request())
        ok = response.success
        self.assertEqual(ok.actr_id.realm.realm_id, 1001)
        self.assertEqual(ok.actr_id.type, register_request().actr_type)
        millis, worker, _ = decompose(ok.actr_id.serial_number)
        self.assertEqual((millis, worker), (NOW * 1000 - EPOCH_MS, 9))
        self.assertEqual(len(ok.psk), 32)
        self.assertEqual(ok.credential_expires_at.seconds, NOW + 3600)
        self.assertEqual(ok.credential_expires_at.nanos, 0)
        self.assertEqual(ok.signaling_heartbeat_interval_secs, 30)
        key_id = ok.credential.token_key_id
        secret = self.keys.secrets[key_id].secret_key
        claims = tokens.decrypt_token(secret, ok.credential.encrypted_token)
        self.assertEqual(claims.actor_id, actr_id_repr(ok.actr_id))
        self.assertEqual(claims.realm_id, 1001)
        self.assertEqual(claims.expr_time, NOW + 3600)
        self.assertEqual(claims.psk, ok.psk)

    def test_issued_tokens_are_announced_with_their_claims(self) -> None:
        """on_issued hears each token with exactly the claims it decrypts to."""
        heard: list[tuple[int, bytes, Any]] = []
        self.issuer.on_issued = lambda key_id, token, claims: heard.append(
            (key_id, token, claims)
        )
        ok = self._register(register_request()).success
        ((key_id, token, claims),) = heard
        self.assertEqual(key_id, ok.credential.token_key_id)
        self.assertEqual(token, ok.credential.encrypted_token)
        secret = self.keys.secrets[key_id].secret_key
        self.assertEqual(tokens.decrypt_token(secret, token), claims)

    def test_claims_plaintext_form(self) -> None:
        """The token's plaintext is the compact claims JSON in spec order."""
        import ecies

        ok = self._register(register_request()).success
        secret = self.keys.secrets[ok.credential.token_key_id].secret_key
        plain = ecies.decrypt(secret, ok.credential.encrypted_token)
        self.assertEqual(
            list(json.loads(plain)), ["realm_id", "actor_id", "expr_time", "psk"]
        )
        self.assertNotIn(b" ", plain)
        self.assertEqual(json.loads(plain)["psk"], list(ok.psk))

    def test_serials_differ(self) -> None:
        """Two registrations in one millisecond get different serials."""
        a = self._register(register_request()).success.actr_id.serial_number
        b = self._register(register_request()).success.actr_id.serial_number
        self.assertNotEqual(a, b)

    def test_refresh_keeps_actr_id(self) -> None:
        """refresh issues a new token and PSK for the same ActrId."""
        first = self._register(register_request()).success
        self.clock.advance(100)
        again = self.successResultOf(deferred(self.issuer.refresh(first.actr_id)))
        self.assertEqual(again.success.actr_id, first.actr_id)
        self.assertNotEqual(again.success.psk, first.psk)
        secret = self.keys.secrets[again.success.credential.token_key_id].secret_key
        claims = tokens.decrypt_token(secret, again.success.credential.encrypted_token)
        self.assertEqual(claims.actor_id, actr_id_repr(first.actr_id))
        self.assertEqual(claims.expr_time, NOW + 100 + 3600)

    def test_refresh_incomplete_id(self) -> None:
        """An incomplete ActrId is a 400 error."""
        response = self.successResultOf(
            deferred(self.issuer.refresh(actr_pb2.ActrId()))
        )
        self.assertEqual(response.error.code, 400)

    def test_register_incomplete_type_or_realm(self) -> None:
        """Sub-messages missing required fields are refused before a serial is used."""
        request = register_request()
        request.actr_type.ClearField("manufacturer")
        response = self._register(request)
        self.assertEqual(response.error.code, 400)
        self.assertEqual(self.keys.generate_calls, 0)
        self.assertEqual(self.issuer.metrics.registrations, 0)
        ok = self._register(register_request())
        self.assertEqual(decompose(ok.success.actr_id.serial_number)[2], 0)

    def test_ks_unavailable(self) -> None:
        """Without KS the response is error 500 naming the cause."""
        self.keys.fail = True
        response = self._register(register_request())
        self.assertEqual(response.error.code, 500)
        self.assertEqual(
            response.error.message,
            "Token generation failed: KS unavailable: connection refused",
        )

    def test_unexpected_key_error_does_not_wedge_loading(self) -> None:
        """After a key load fails unexpectedly, the next caller loads again."""
        generate = self.keys.generate_key

        async def broken() -> Any:
            raise RuntimeError("bug")

        self.keys.generate_key = broken  # type: ignore[method-assign] # one failure
        self.failureResultOf(deferred(self.issuer.ensure_key()), RuntimeError)
        self.keys.generate_key = generate  # type: ignore[method-assign] # restore
        key = self.successResultOf(deferred(self.issuer.ensure_key()))
        self.assertEqual(key.key_id, 1)

    def test_key_fetched_once_and_saved(self) -> None:
        """The first registration fetches a key and persists it."""
        self._register(register_request())
        self._register(register_request())
        self.assertEqual(self.keys.generate_calls, 1)
        row = self.db.conn.execute(
            "SELECT key_id, expires_at FROM current_key"
        ).fetchone()
        self.assertEqual(row, (1, NOW + 3600))

    def test_stored_key_loaded_within_tolerance(self) -> None:
        """A restart inside expiry + tolerance reuses the stored key."""
        self._register(register_request())
        self.clock.advance(3600 + 600)
        restarted = self._issuer()
        key = self.successResultOf(deferred(restarted.ensure_key()))
        self.assertEqual(key.key_id, 1)
        self.assertEqual(self.keys.generate_calls, 1)

    def test_stored_key_past_tolerance_replaced(self) -> None:
        """A restart after expiry + tolerance fetches a new key."""
        self._register(register_request())
        self.clock.advance(3600 + 601)
        restarted = self._issuer()
        key = self.successResultOf(deferred(restarted.ensure_key()))
        self.assertEqual(key.key_id, 2)

    def test_refresh_rule(self) -> None:
        """The tick replaces the key from 10 minutes before expiry."""
        self.successResultOf(deferred(self.issuer.refresh_if_due()))
        self.assertEqual(self.keys.generate_calls, 1)
        self.clock.advance(3600 - 601)
        self.successResultOf(deferred(self.issuer.refresh_if_due()))
        self.assertEqual(self.keys.generate_calls, 1)
        self.clock.advance(1)
        self.successResultOf(deferred(self.issuer.refresh_if_due()))
        self.assertEqual(self.keys.generate_calls, 2)
        assert self.issuer.current is not None
        self.assertEqual(self.issuer.current.key_id, 2)

    def test_never_expiring_key_refetched(self) -> None:
        """With expires_at = 0 every tick fetches a new key (as the original)."""
        self.keys.expires_at = 0
        self.successResultOf(deferred(self.issuer.refresh_if_due()))
        self.assertEqual(self.keys.generate_calls, 1)
        self.clock.advance(600)
        self.successResultOf(deferred(self.issuer.refresh_if_due()))
        self.assertEqual(self.keys.generate_calls, 2)

    def test_timer_logs_failures(self) -> None:
        """A failing tick is logged and retried on the next one."""
        self.keys.fail = True
        timer = self.issuer.refresh_timer()
        timer.startService()
        self.assertEqual(self.keys.generate_calls, 1)
        self.keys.fail = False
        self.clock.advance(600)
        self.assertEqual(self.keys.generate_calls, 2)
        self.assertIsNotNone(self.issuer.current)
        timer.stopService()

    def test_health(self) -> None:
        """Health reports database, KS and key state."""
        self.clock.advance(0)
        health = self.successResultOf(deferred(self.issuer.health()))
        self.assertEqual(health["status"], "healthy")
        self.assertEqual(
            health["key_cache"], {"status": "ok", "key_id": 1, "expires_in": 3600}
        )
        self.keys.fail = True
        self.issuer.current = None
        health = self.successResultOf(deferred(self.issuer.health()))
        self.assertEqual(health["status"], "degraded")
        self.assertEqual(health["ks_service"], "failed")

    def test_saved_key_round_trip(self) -> None:
        """The store returns what it saved."""
        store = CurrentKeyStore(self.db.database())
        key = CurrentKey(5, b"\x02" + b"\x01" * 32, NOW, NOW + 10, 20)
        self.successResultOf(deferred(store.save(key)))
        self.successResultOf(deferred(store.save(attrs.evolve(key, key_id=6))))
        self.assertEqual(
            self.successResultOf(deferred(store.load())), attrs.evolve(key, key_id=6)
        )

    def test_stored_key_near_expiry_rotated_on_first_tick(self) -> None:
        """A stored key within 10 minutes of expiry is replaced at startup."""
        self._register(register_request())
        self.clock.advance(3600 - 300)
        restarted = self._issuer()
        self.successResultOf(deferred(restarted.refresh_if_due()))
        assert restarted.current is not None
        self.assertEqual(restarted.current.key_id, 2)


class SharedStoreRotationTests(SynchronousTestCase):
    """Two issuers (two nodes) on one current-key store."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys(expires_at=NOW + 3600, tolerance=600)
        self.db = SyncDatabase(MIGRATIONS)

    def _issuer(self) -> IdentityIssuer:
        return IdentityIssuer(
            self.keys,
            CurrentKeyStore(self.db.database()),
            self.clock,
            SerialGenerator(lambda: int(self.clock.seconds() * 1000), worker=9),
            token_ttl_secs=3600,
            heartbeat_interval_secs=30,
        )

    def test_second_node_adopts_the_first_nodes_rotation(self) -> None:
        """When both are due, the node that comes second uses the stored new key."""
        one, two = self._issuer(), self._issuer()
        first = self.successResultOf(deferred(one.ensure_key()))
        self.assertEqual(self.successResultOf(deferred(two.ensure_key())), first)
        self.assertEqual(self.keys.generate_calls, 1)
        self.clock.advance(3600 - 300)  # inside the refresh margin
        self.keys.expires_at = NOW + 7200  # what KS gives a key minted now
        self.successResultOf(deferred(one.refresh_if_due()))
        self.successResultOf(deferred(two.refresh_if_due()))
        assert one.current is not None and two.current is not None
        self.assertNotEqual(one.current.key_id, first.key_id)
        self.assertEqual(two.current, one.current)
        self.assertEqual(self.keys.generate_calls, 2)

    def test_racing_rotation_keeps_one_current_key(self) -> None:
        """Two forced rotations from the same key: the later adopts the earlier."""
        one, two = self._issuer(), self._issuer()
        self.successResultOf(deferred(one.ensure_key()))
        self.successResultOf(deferred(two.ensure_key()))
        winner = self.successResultOf(deferred(one.rotate()))
        loser = self.successResultOf(deferred(two.rotate()))
        self.assertEqual(loser, winner)
        self.assertEqual(two.current, winner)
        self.assertEqual(self.db.rows("current_key"), 1)
