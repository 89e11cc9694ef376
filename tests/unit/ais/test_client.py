"""Tests for actrix.ais.client against the real /ais resource (StubTreq)."""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from actrix.ais.client import IdentityClient
from actrix.ais.ratelimit import IpRateLimiter
from actrix.ais.resource import AisResource
from actrix.ais.serials import SerialGenerator
from actrix.ais.service import IdentityIssuer
from actrix.ais.store import MIGRATIONS, CurrentKeyStore
from actrix.core.auth import NonceVerifier
from actrix.core.config import Secret
from actrix.core.webclient import PooledHttp
from tests.unit.ais.test_service import register_request
from tests.unit.ks.fakes import FakeKeys, MemoryNonces, SyncDatabase, deferred

NOW = 1_700_000_000
SECRET = "test-shared-key-0123456789abcdef"


class IdentityClientTests(SynchronousTestCase):
    """The remote IdentityIssuer speaks the AIS HTTP API."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys(expires_at=NOW + 3600)
        issuer = IdentityIssuer(
            self.keys,
            CurrentKeyStore(SyncDatabase(MIGRATIONS).database()),
            self.clock,
            SerialGenerator(lambda: int(self.clock.seconds() * 1000), worker=2),
        )
        self.root = Resource()
        self.limiter = IpRateLimiter(self.clock, rate=1, burst=3)
        resource = AisResource(
            issuer,
            NonceVerifier(SECRET.encode(), MemoryNonces(), self.clock),
            self.limiter,
        )
        self.root.putChild(b"ais", resource.app.resource())

    def _client(self, key: str = SECRET) -> IdentityClient:
        http = PooledHttp(StubTreq(self.root))
        return IdentityClient("http://ais.test/", 5.0, Secret(key), self.clock, http)

    def test_register_and_refresh(self) -> None:
        """register mints an id; refresh keeps it with a new PSK."""
        client = self._client()
        first = self.successResultOf(deferred(client.register(register_request())))
        self.assertTrue(first.HasField("success"))
        again = self.successResultOf(deferred(client.refresh(first.success.actr_id)))
        self.assertEqual(again.success.actr_id, first.success.actr_id)
        self.assertNotEqual(again.success.psk, first.success.psk)

    def test_refresh_wrong_key(self) -> None:
        """A refresh signed with another key comes back as error 500."""
        client = self._client()
        first = self.successResultOf(deferred(client.register(register_request())))
        other = self._client("another-shared-key-0123456789")
        response = self.successResultOf(deferred(other.refresh(first.success.actr_id)))
        self.assertEqual(
            (response.error.code, response.error.message),
            (500, "AIS returned HTTP 401"),
        )

    def test_not_rate_limited(self) -> None:
        """The signed client is exempt from the per-IP limit."""
        client = self._client()
        for _ in range(5):
            response = self.successResultOf(
                deferred(client.register(register_request()))
            )
            self.assertTrue(response.HasField("success"))

    def test_rate_limited(self) -> None:
        """A 429 comes back as error 429."""
        from tests.unit.ks.test_client import _Fixed

        self.root = Resource()
        self.root.putChild(b"ais", _Fixed(429, b"{}"))
        response = self.successResultOf(
            deferred(self._client().register(register_request()))
        )
        self.assertEqual(response.error.code, 429)

    def test_register_wrong_key(self) -> None:
        """A register signed with another key is refused (error 500)."""
        other = self._client("another-shared-key-0123456789")
        response = self.successResultOf(deferred(other.register(register_request())))
        self.assertEqual(response.error.message, "AIS returned HTTP 401")

    def test_ais_error_passes_through(self) -> None:
        """An AIS error result is returned as is."""
        self.keys.fail = True
        response = self.successResultOf(
            deferred(self._client().register(register_request()))
        )
        self.assertEqual(response.error.code, 500)
        self.assertIn("KS unavailable", response.error.message)

    def test_failures_logged_once_per_interval(self) -> None:
        """An AIS answering errors to every register writes one warning a minute."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, globalLogPublisher

        from tests.unit.ks.test_client import _Fixed

        events = EventLoggingObserver()
        globalLogPublisher.addObserver(events)
        self.addCleanup(globalLogPublisher.removeObserver, events)
        self.root = Resource()
        self.root.putChild(b"ais", _Fixed(503, b"{}"))
        client = self._client()
        for _ in range(20):
            response = self.successResultOf(
                deferred(client.register(register_request()))
            )
            self.assertEqual(response.error.message, "AIS returned HTTP 503")
        self.clock.advance(60)
        self.successResultOf(deferred(client.register(register_request())))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[1]["suppressed"], 19)
