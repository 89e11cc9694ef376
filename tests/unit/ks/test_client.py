"""Tests for actrix.ks.client against the real /ks resource (StubTreq)."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from actrix.core.auth import NonceVerifier
from actrix.core.interfaces import KeyProviderError
from actrix.core.webclient import PooledHttp
from actrix.ks.client import KeyServerClient
from actrix.ks.resource import KsResource
from actrix.ks.service import KeyService
from actrix.ks.store import MIGRATIONS, KeyStore
from tests.unit.ks.fakes import MemoryNonces, SyncDatabase, deferred

NOW = 1_700_000_000
SECRET = b"test-shared-key-0123456789abcdef"


class _Fixed(Resource):
    isLeaf = True

    def __init__(self, code: int, body: bytes) -> None:
        super().__init__()
        self._code, self._body = code, body

    def render(self, request: Request) -> bytes:
        request.setResponseCode(self._code)
        return self._body


class KeyServerClientTests(SynchronousTestCase):
    """The remote KeyProvider speaks the KS HTTP API."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.db = SyncDatabase(MIGRATIONS)
        self.service = KeyService(KeyStore(self.db.database()), self.clock, 3600, 60)
        resource = KsResource(
            self.service, NonceVerifier(SECRET, MemoryNonces(), self.clock), self.clock
        )
        root = Resource()
        root.putChild(b"ks", resource.app.resource())
        self.client = self._client(root)

    def _client(self, root: Resource, key: bytes = SECRET) -> KeyServerClient:
        http = PooledHttp(StubTreq(root))
        return KeyServerClient("http://ks.test:8080/", 5.0, key, self.clock, http=http)

    def test_generate_and_fetch(self) -> None:
        """A generated key's secret can be fetched back."""
        record = self.successResultOf(deferred(self.client.generate_key()))
        self.assertEqual(len(record.public_key), 33)
        secret = self.successResultOf(deferred(self.client.secret_key(record.key_id)))
        assert secret is not None
        local = self.successResultOf(deferred(self.service.secret_key(record.key_id)))
        self.assertEqual(secret, local)

    def test_unknown_key_is_none(self) -> None:
        """A 404 maps to None."""
        self.assertIsNone(self.successResultOf(deferred(self.client.secret_key(9))))

    def test_wrong_shared_key(self) -> None:
        """A 401 is a KeyProviderError."""
        root = Resource()
        resource = KsResource(
            self.service, NonceVerifier(SECRET, MemoryNonces(), self.clock), self.clock
        )
        root.putChild(b"ks", resource.app.resource())
        client = self._client(root, key=b"some-other-shared-key-000000")
        failure = self.failureResultOf(
            deferred(client.generate_key()), KeyProviderError
        )
        self.assertIn("401", str(failure.value))

    def test_malformed_responses(self) -> None:
        """Wrong key lengths or non-JSON bodies are KeyProviderErrors."""
        for body in (
            b"not json",
            b'{"key_id":1,"public_key":"AAAA","expires_at":0,"tolerance_seconds":0}',
            b'{"key_id":1,"secret_key":"AAAA","expires_at":0,"tolerance_seconds":0}',
            b'{"key_id":-1}',
        ):
            root = Resource()
            root.putChild(b"ks", _Fixed(200, body))
            client = self._client(root)
            self.failureResultOf(deferred(client.generate_key()), KeyProviderError)
            self.failureResultOf(deferred(client.secret_key(1)), KeyProviderError)

    def test_transport_failure(self) -> None:
        """A failing HTTP client is a KeyProviderError."""

        class Broken:
            def request(self, *args: Any, **kwargs: Any) -> Any:
                raise ConnectionRefusedError("refused")

        client = KeyServerClient(
            "http://ks.test", 1.0, SECRET, self.clock, http=PooledHttp(Broken())
        )
        self.failureResultOf(deferred(client.secret_key(1)), KeyProviderError)

    def test_tls_upgrade(self) -> None:
        """enable_tls turns an http:// endpoint into https://."""
        from actrix.core.config import KsClientConfig

        config = KsClientConfig(
            "http://ks.test:50052", 5.0, enable_tls=True, tls_domain="ks.test"
        )
        client = KeyServerClient(
            config.endpoint,
            5.0,
            SECRET,
            self.clock,
            http=PooledHttp(None),
            config=config,
        )
        self.assertEqual(client._base, "https://ks.test:50052")
