"""TURN's part of a revocation: allocations terminated, the token refused after."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import tokens
from actrix.core.credentials import TokenValidator
from actrix.core.interfaces import Claims
from actrix.core.revocations import Revocation, RevocationList, RevokingValidator
from tests.unit.turn.helpers import Harness, error_code
from tests.unit.turn.test_auth import PSK, REALM_ID, FakeKeys, FakeRealms, actr_username


class _NoDatabase:
    dialect = "sqlite"


class TerminateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = FakeKeys()
        self.harness = Harness(realms=FakeRealms())
        self.revoked = RevocationList(_NoDatabase(), Clock())  # type: ignore[arg-type]  # never queried
        self.harness.auth._validator = RevokingValidator(
            TokenValidator(self.keys, self.harness.clock), self.revoked
        )
        self.now = int(self.harness.clock.seconds())

    def _username(self, serial: int, realm_id: int = REALM_ID) -> str:
        claims = Claims(
            realm_id, f"{serial:x}@{realm_id}/acme:svc", self.now + 600, PSK
        )
        public = self.keys.private.public_key.format(True)
        return actr_username(tokens.encrypt_token(public, claims), realm_id)

    def test_terminate_actor_ends_its_allocations_and_its_cached_key(self) -> None:
        """Only the revoked actor's allocation goes; its next Allocate is 401."""
        doomed = self._username(0xA1)
        kept = self._username(0xA2)
        for port, name in ((1, doomed), (2, kept)):
            client = self.harness.client(("192.0.2.1", port), name, PSK.hex())
            self.assertIsNone(error_code(client.allocate()))
        self.assertEqual(self.harness.auth.cached_count, 2)
        self.revoked.add(Revocation(REALM_ID, 0xA1, "a1", "r", 0, self.now + 600))
        service = self.harness.service
        self.assertEqual(service.terminate_actor(REALM_ID, 0xA1, "revoked"), 1)
        self.assertEqual(len(service.allocations), 1)
        self.assertEqual(self.harness.auth.cached_count, 1)
        self.assertEqual(self.harness.metrics.allocations_closed["revoked"], 1)
        again = self.harness.client(("192.0.2.1", 3), doomed, PSK.hex())
        self.assertEqual(error_code(again.allocate()), 401)
        self.assertEqual(self.harness.metrics.auth_failures["revoked"], 1)
        self.assertEqual(service.terminate_actor(REALM_ID, 0xA1, "revoked"), 0)

    def test_terminate_realm_ends_every_actor_allocation_of_it(self) -> None:
        """A realm's actor allocations go; static users' allocations stay."""
        for port, serial in ((1, 0xB1), (2, 0xB2)):
            name = self._username(serial)
            client = self.harness.client(("192.0.2.1", port), name, PSK.hex())
            self.assertIsNone(error_code(client.allocate()))
        static = self.harness.client(("192.0.2.1", 3))
        self.assertIsNone(error_code(static.allocate()))
        service = self.harness.service
        self.assertEqual(service.terminate_realm(REALM_ID + 1, "suspended"), 0)
        self.assertEqual(service.terminate_realm(REALM_ID, "suspended"), 2)
        self.assertEqual(len(service.allocations), 1)
        self.assertEqual(self.harness.auth.cached_count, 0)
