"""Tests for actrix.ks.resource: the /ks HTTP API, status codes and bodies."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import coincurve
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.auth import NonceVerifier, sign_credential
from actrix.ks import kek as kek_mod
from actrix.ks.resource import MAX_BODY, KsResource
from actrix.ks.service import KeyService
from actrix.ks.store import MIGRATIONS, KeyStore
from tests.unit.ks.fakes import MemoryNonces, SyncDatabase

NOW = 1_700_000_000
SECRET = b"test-shared-key-0123456789abcdef"
BASE = "http://ks.test"


class KsApiTests(SynchronousTestCase):
    """ks.md §2."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.db = SyncDatabase(MIGRATIONS)
        self.nonces = MemoryNonces()
        self.service = KeyService(
            KeyStore(self.db.database()),
            self.clock,
            key_ttl_seconds=3600,
            tolerance_seconds=600,
        )
        verifier = NonceVerifier(SECRET, self.nonces, self.clock)
        self.resource = KsResource(self.service, verifier, self.clock)
        self.http: Any = StubTreq(self.resource.app.resource())

    # -- helpers

    def _response(self, d: Any) -> tuple[int, bytes, Any]:
        response = self.successResultOf(d)
        body = self.successResultOf(self.http.content(response))
        return response.code, body, response

    def _generate(self, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is None:
            credential = sign_credential(SECRET, "generate_key", self.clock.seconds())
            body = {"credential": credential.to_json()}
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = kwargs.pop("headers", {b"content-type": [b"application/json"]})
        code, raw, _ = self._response(
            self.http.post(BASE + "/generate", data=body, headers=headers)
        )
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode()

    def _secret(self, key_id: int | str, query: str | None = None) -> tuple[int, Any]:
        if query is None:
            credential = sign_credential(
                SECRET, f"get_secret_key:{key_id}", self.clock.seconds()
            )
            query = (
                f"key_id={key_id}&credential={quote(credential.to_header(), safe='')}"
            )
        code, raw, _ = self._response(self.http.get(f"{BASE}/secret/{key_id}?{query}"))
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode()

    def _keys(self) -> int:
        return self.db.rows("keys")

    # -- generate

    def test_generate(self) -> None:
        """A signed request creates a key and returns its public half."""
        code, body = self._generate()
        self.assertEqual(code, 200)
        self.assertEqual(
            list(body), ["key_id", "public_key", "expires_at", "tolerance_seconds"]
        )
        self.assertEqual(body["key_id"], 1)
        self.assertEqual(len(base64.b64decode(body["public_key"])), 33)
        self.assertEqual(body["expires_at"], NOW + 3600)
        self.assertEqual(body["tolerance_seconds"], 600)
        self.assertEqual(self._keys(), 1)

    def test_generate_never_expiring(self) -> None:
        """key_ttl_seconds = 0 gives expires_at = 0."""
        self.service.key_ttl_seconds = 0
        self.assertEqual(self._generate()[1]["expires_at"], 0)

    def test_generate_wrong_content_type(self) -> None:
        """Without a JSON content type the answer is 415 and nothing is stored."""
        code, _ = self._generate(headers={b"content-type": [b"text/plain"]})
        self.assertEqual(code, 415)
        code, _ = self._generate(headers={})
        self.assertEqual(code, 415)
        self.assertEqual(self._keys(), 0)

    def test_generate_malformed_json(self) -> None:
        """Broken JSON is 400."""
        self.assertEqual(self._generate(b'{"credential": ')[0], 400)
        self.assertEqual(self._keys(), 0)

    def test_generate_wrong_shape(self) -> None:
        """JSON without a proper credential is 422."""
        body: Any
        for body in (
            [],
            {},
            {"credential": {"timestamp": NOW, "nonce": "n"}},
            {"credential": {"timestamp": "x", "nonce": "n", "signature": "s"}},
        ):
            self.assertEqual(self._generate(body)[0], 422)
        self.assertEqual(self._keys(), 0)

    def test_generate_deeply_nested_json(self) -> None:
        """JSON nested past Python's recursion limit is 400, not a crash."""
        self.assertEqual(self._generate(b"[" * MAX_BODY)[0], 400)
        self.assertEqual(self._keys(), 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_generate_lone_surrogate_nonce(self) -> None:
        """A nonce spelling a lone surrogate is refused cleanly, nothing stored."""
        body = (
            b'{"credential": {"timestamp": %d, "nonce": "\\ud800",'
            b' "signature": "x"}}' % NOW
        )
        self.assertEqual(self._generate(body)[0], 422)
        self.assertEqual(self._keys(), 0)
        self.assertEqual(self.nonces.taken, {})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_generate_huge_timestamp(self) -> None:
        """A timestamp of 30 or 4 000 digits is refused cleanly, nothing stored."""
        for digits, code in ((30, 422), (4000, 422)):
            body = b'{"credential": {"timestamp": %s, "nonce": "n", "signature": "s"}}'
            self.assertEqual(self._generate(body % (b"9" * digits))[0], code)
        self.assertEqual(self._keys(), 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_generate_bad_signature(self) -> None:
        """A wrong signature is 401 with the generic body."""
        credential = sign_credential(b"another-key-entirely-000", "generate_key", NOW)
        code, body = self._generate({"credential": credential.to_json()})
        self.assertEqual(
            (code, body), (401, {"error": "Authentication failed", "code": 401})
        )
        self.assertEqual(self._keys(), 0)

    def test_generate_stale_and_future(self) -> None:
        """Timestamps more than 60 s off are 401."""
        for offset in (-61, 61):
            credential = sign_credential(SECRET, "generate_key", NOW + offset)
            self.assertEqual(
                self._generate({"credential": credential.to_json()})[0], 401
            )
        self.assertEqual(self._keys(), 0)

    def test_generate_replay(self) -> None:
        """A replayed credential is 403 with the generic body."""
        credential = sign_credential(SECRET, "generate_key", NOW)
        self._generate({"credential": credential.to_json()})
        code, body = self._generate({"credential": credential.to_json()})
        self.assertEqual(
            (code, body), (403, {"error": "Request rejected", "code": 403})
        )
        self.assertEqual(self._keys(), 1)

    def test_generate_nonce_store_failure(self) -> None:
        """A failing nonce store is 500."""
        self.nonces.fail = True
        code, body = self._generate()
        self.assertEqual(
            (code, body), (500, {"error": "Internal server error", "code": 500})
        )

    def test_generate_db_failure(self) -> None:
        """A failing key store is 500."""
        self.db.fail = True
        self.assertEqual(self._generate()[0], 500)
        self.flushLoggedErrors()

    def test_generate_oversize(self) -> None:
        """A body over the limit is 413 and nothing is stored."""
        self.assertEqual(self._generate(b" " * (MAX_BODY + 1))[0], 413)
        self.assertEqual(self._keys(), 0)

    def test_generate_get_not_allowed(self) -> None:
        """GET on /generate is not allowed."""
        code, _, _ = self._response(self.http.get(BASE + "/generate"))
        self.assertEqual(code, 405)

    # -- secret

    def _make_key(self) -> int:
        code, body = self._generate()
        self.assertEqual(code, 200)
        return int(body["key_id"])

    def test_secret_json_credential(self) -> None:
        """The JSON-string credential encoding returns the matching secret."""
        key_id = self._make_key()
        code, body = self._secret(key_id)
        self.assertEqual(code, 200)
        self.assertEqual(
            list(body), ["key_id", "secret_key", "expires_at", "tolerance_seconds"]
        )
        secret = base64.b64decode(body["secret_key"])
        self.assertEqual(len(secret), 32)
        public = coincurve.PrivateKey(secret).public_key.format(compressed=True)
        row = self.db.conn.execute("SELECT public_key FROM keys").fetchone()
        self.assertEqual(base64.b64encode(public).decode(), row[0])

    def test_secret_flat_and_bracket_credentials(self) -> None:
        """Dotted and bracketed query fields work too."""
        key_id = self._make_key()
        for style in ("credential.{}", "credential[{}]"):
            c = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW)
            query = "&".join(
                [f"key_id={key_id}"]
                + [
                    f"{quote(style.format(k))}={quote(str(v), safe='')}"
                    for k, v in c.to_json().items()
                ]
            )
            self.assertEqual(self._secret(key_id, query)[0], 200)

    def test_secret_bad_parameters(self) -> None:
        """Missing, invalid or mismatching parameters are 400 with the generic body."""
        key_id = self._make_key()
        good = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW).to_header()
        for query in (
            f"credential={quote(good)}",
            f"key_id=2&credential={quote(good)}",
            f"key_id=x&credential={quote(good)}",
            f"key_id={key_id}",
            f"key_id={key_id}&credential=%7Bnot-json",
            f"key_id={key_id}&credential={quote('[' * 3000)}",
            f"key_id={key_id}&credential="
            + quote(f'{{"timestamp":{NOW},"nonce":"\\udc00","signature":"s"}}'),
            f"key_id={key_id}&credential.timestamp=1&credential.nonce=n",
            f"key_id={key_id}&credential.timestamp=-1&credential.nonce=n"
            "&credential.signature=s",
        ):
            code, body = self._secret(key_id, query)
            self.assertEqual(
                (code, body),
                (400, {"error": "Invalid request parameters", "code": 400}),
                query,
            )

    def test_secret_bad_path(self) -> None:
        """A non-numeric or out-of-range path id is 400."""
        self.assertEqual(self._secret("abc", "key_id=1")[0], 400)
        self.assertEqual(self._secret(str(1 << 32), "key_id=1")[0], 400)

    def test_secret_huge_numbers(self) -> None:
        """Numbers with thousands of digits are 400 before authentication, no 500."""
        key_id = self._make_key()
        taken = dict(self.nonces.taken)
        huge = "9" * 5000
        good = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW).to_header()
        for query in (
            f"key_id={huge}&credential={quote(good)}",
            f"key_id={'1' * 11}&credential={quote(good)}",
            f"key_id={key_id}&credential.timestamp={huge}&credential.nonce=n"
            "&credential.signature=s",
            f"key_id={key_id}&credential[timestamp]={'1' * 21}"
            "&credential[nonce]=n&credential[signature]=s",
            f"key_id={key_id}&credential="
            + quote(f'{{"timestamp":{huge},"nonce":"n","signature":"s"}}'),
        ):
            code, body = self._secret(key_id, query)
            self.assertEqual(
                (code, body),
                (400, {"error": "Invalid request parameters", "code": 400}),
                query[:40],
            )
        code, body = self._secret(huge, "key_id=1")
        self.assertEqual(code, 400)
        self.assertEqual(body, "Invalid URL: Cannot parse `key_id` to a `u32`")
        self.assertEqual(self.nonces.taken, taken)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_secret_leading_zeros(self) -> None:
        """Leading zeros are accepted as Rust's u32 parser does, however many."""
        key_id = self._make_key()
        padded = "0" * 40 + str(key_id)
        credential = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW)
        query = f"key_id={padded}&credential={quote(credential.to_header(), safe='')}"
        self.assertEqual(self._secret(padded, query)[0], 200)

    def test_secret_unescaped_signature(self) -> None:
        """A '+' left unescaped in the signature decodes to a space: 401."""
        key_id = self._make_key()
        for _ in range(40):
            c = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW)
            if "+" in c.signature:
                break
        else:
            self.skipTest("no '+' in 40 signatures")
        query = (
            f"key_id={key_id}&credential.timestamp={c.timestamp}"
            f"&credential.nonce={c.nonce}&credential.signature={c.signature}"
        )
        self.assertEqual(self._secret(key_id, query)[0], 401)

    def test_secret_wrong_payload(self) -> None:
        """A credential signed for another key id is 401."""
        key_id = self._make_key()
        c = sign_credential(SECRET, "get_secret_key:999", NOW)
        query = f"key_id={key_id}&credential={quote(c.to_header(), safe='')}"
        self.assertEqual(self._secret(key_id, query)[0], 401)

    def test_secret_unknown(self) -> None:
        """An unknown key is 404 with the generic body."""
        self.assertEqual(
            self._secret(42), (404, {"error": "Resource not found", "code": 404})
        )

    def test_secret_tolerance(self) -> None:
        """A key is served up to expiry + tolerance, then 404."""
        key_id = self._make_key()
        self.clock.advance(3600 + 600)
        self.assertEqual(self._secret(key_id)[0], 200)
        self.clock.advance(1)
        self.assertEqual(self._secret(key_id)[0], 404)

    def test_secret_replay(self) -> None:
        """A replayed secret request is 403."""
        key_id = self._make_key()
        c = sign_credential(SECRET, f"get_secret_key:{key_id}", NOW)
        query = f"key_id={key_id}&credential={quote(c.to_header(), safe='')}"
        self.assertEqual(self._secret(key_id, query)[0], 200)
        self.assertEqual(self._secret(key_id, query)[0], 403)

    def test_secret_unopenable(self) -> None:
        """A stored secret that cannot be opened is 500."""
        key_id = self._make_key()
        self.service._kek = bytes(32)
        self.assertEqual(self._secret(key_id)[0], 500)

    # -- health

    def test_health(self) -> None:
        """Health reports the key count, expired rows included."""
        self._make_key()
        self.clock.advance(10_000)
        code, body = self._response(self.http.get(BASE + "/health"))[:2]
        self.assertEqual(code, 200)
        self.assertEqual(
            json.loads(body),
            {
                "status": "healthy",
                "service": "ks",
                "backend": "SQLite",
                "key_count": 1,
                "timestamp": NOW + 10_000,
            },
        )

    def test_health_db_failure(self) -> None:
        """A failing store makes health answer 500."""
        self.db.fail = True
        code, body = self._response(self.http.get(BASE + "/health"))[:2]
        self.assertEqual(code, 500)
        self.assertEqual(
            json.loads(body), {"error": "Internal server error", "code": 500}
        )
        self.flushLoggedErrors()

    def test_metrics_count_statuses(self) -> None:
        """Requests are counted by status."""
        self._generate()
        self._secret(99)
        self.assertEqual(self.service.metrics.requests[200], 1)
        self.assertEqual(self.service.metrics.requests[404], 1)


class KeyServiceTests(SynchronousTestCase):
    """Cleanup and KEK sealing in the service."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.db = SyncDatabase(MIGRATIONS)

    def _service(self, kek: bytes | None = None, ttl: int = 100) -> KeyService:
        return KeyService(
            KeyStore(self.db.database()),
            self.clock,
            ttl,
            50,
            kek=kek,
        )

    def test_cleanup_honours_tolerance(self) -> None:
        """Only keys past expiry + tolerance are deleted; ids are never reused."""
        service = self._service()
        first = self.successResultOf(_d(service.generate_key()))
        self.clock.advance(120)
        second = self.successResultOf(_d(service.generate_key()))
        self.clock.advance(31)  # first: 151 > 100 + 50; second: 31 < 150
        self.assertEqual(self.successResultOf(_d(service.delete_expired())), 1)
        self.assertIsNone(self.successResultOf(_d(service.secret_key(first.key_id))))
        self.assertIsNotNone(
            self.successResultOf(_d(service.secret_key(second.key_id)))
        )
        third = self.successResultOf(_d(service.generate_key()))
        self.assertEqual(third.key_id, 3)

    def test_kek_seals_at_rest(self) -> None:
        """With a KEK the stored secret is sealed and still served correctly."""
        kek = bytes(range(32))
        service = self._service(kek)
        record = self.successResultOf(_d(service.generate_key()))
        stored = self.db.conn.execute("SELECT secret_key FROM keys").fetchone()[0]
        self.assertEqual(len(base64.b64decode(stored)), 12 + 44 + 16)
        secret = self.successResultOf(_d(service.secret_key(record.key_id)))
        assert secret is not None
        self.assertEqual(
            base64.b64encode(secret.secret_key).decode(), kek_mod.unseal(kek, stored)
        )
        public = coincurve.PrivateKey(secret.secret_key).public_key.format(
            compressed=True
        )
        self.assertEqual(public, record.public_key)


def _d(coro: Any) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coro)
