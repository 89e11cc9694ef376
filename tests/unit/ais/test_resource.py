"""Tests for actrix.ais.resource: /ais routes, auth, rate limit, bad input."""

from __future__ import annotations

import json
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.ais.metrics import AisMetrics
from actrix.ais.ratelimit import IpRateLimiter
from actrix.ais.resource import MAX_BODY, AisResource
from actrix.ais.serials import SerialGenerator
from actrix.ais.service import IdentityIssuer
from actrix.ais.store import MIGRATIONS, CurrentKeyStore
from actrix.core.actrid import actr_id_repr
from actrix.core.auth import NonceVerifier, sign_credential
from actrix.proto import actr_pb2
from tests.unit.ais.test_service import register_request
from tests.unit.ks.fakes import FakeKeys, MemoryNonces, SyncDatabase

NOW = 1_700_000_000
SECRET = b"test-shared-key-0123456789abcdef"
BASE = "http://ais.test"


class AisApiTests(SynchronousTestCase):
    """ais.md §1 plus the authenticated routes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.keys = FakeKeys(expires_at=NOW + 3600)
        self.db = SyncDatabase(MIGRATIONS)
        self.issuer = IdentityIssuer(
            self.keys,
            CurrentKeyStore(self.db.database()),
            self.clock,
            SerialGenerator(lambda: int(self.clock.seconds() * 1000), worker=1),
        )
        self.nonces = MemoryNonces()
        self.limiter = IpRateLimiter(self.clock, rate=0.5, burst=100)
        resource = AisResource(
            self.issuer,
            NonceVerifier(SECRET, self.nonces, self.clock),
            self.limiter,
        )
        self.http: Any = StubTreq(resource.app.resource())

    def _call(
        self, method: str, path: str, data: bytes = b"", headers: Any = None
    ) -> tuple[int, bytes, Any]:
        response = self.successResultOf(
            self.http.request(method, BASE + path, data=data, headers=headers or {})
        )
        return (
            response.code,
            self.successResultOf(self.http.content(response)),
            response,
        )

    def _register(self, data: bytes) -> actr_pb2.RegisterResponse:
        code, body, response = self._call("POST", "/register", data)
        self.assertEqual(code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"),
            [b"application/octet-stream"],
        )
        return actr_pb2.RegisterResponse.FromString(body)

    def _auth(self, payload: str) -> dict[bytes, list[bytes]]:
        credential = sign_credential(SECRET, payload, self.clock.seconds())
        return {b"x-actrix-credential": [credential.to_header().encode()]}

    def test_register(self) -> None:
        """A valid request gets a success response."""
        response = self._register(register_request().SerializeToString())
        self.assertTrue(response.HasField("success"))
        self.assertEqual(response.success.actr_id.realm.realm_id, 1001)

    def test_register_truncated(self) -> None:
        """A truncated body gets HTTP 200 with error 400 and stores nothing."""
        raw = register_request().SerializeToString()
        response = self._register(raw[:-3])
        self.assertEqual(response.error.code, 400)
        self.assertTrue(response.error.message.startswith("Invalid protobuf: "))
        self.assertEqual(self.keys.generate_calls, 0)

    def test_register_missing_required(self) -> None:
        """A request without a realm is rejected as invalid protobuf."""
        request = actr_pb2.RegisterRequest(
            actr_type=actr_pb2.ActrType(manufacturer="a", name="b")
        )
        raw = request.SerializePartialToString()
        self.assertEqual(self._register(raw).error.code, 400)

    def _assert_nothing_issued(self) -> None:
        self.assertEqual(self.keys.generate_calls, 0)
        self.assertEqual(attrs.asdict(self.issuer.metrics), attrs.asdict(AisMetrics()))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_register_empty_submessages(self) -> None:
        """Empty actr_type or realm sub-messages get error 400 and nothing is issued."""
        partial = actr_pb2.RegisterRequest()
        partial.actr_type.SetInParent()
        partial.realm.SetInParent()
        no_name = register_request()
        no_name.actr_type.ClearField("name")
        no_realm_id = register_request()
        no_realm_id.realm.ClearField("realm_id")
        for request in (partial, no_name, no_realm_id):
            response = self._register(request.SerializePartialToString())
            self.assertEqual(response.error.code, 400)
            self.assertEqual(
                response.error.message,
                "Invalid request: actr_type (manufacturer, name) and realm "
                "(realm_id) are required",
            )
        self._assert_nothing_issued()

    def test_register_invalid_utf8_nested(self) -> None:
        """Invalid UTF-8 in a nested, repeated or ignored string field is error 400."""
        valid = register_request().SerializeToString()

        def field(number: int, payload: bytes) -> bytes:
            return bytes([number << 3 | 2, len(payload)]) + payload

        protobuf = field(1, b"p") + field(2, b"\xff") + field(3, b"f")
        principal = field(2, field(1, b"\xc3") + field(2, b"b"))
        for tail in (
            field(3, field(1, b"n") + field(3, b"f") + field(4, protobuf)),
            field(3, field(1, b"n") + field(3, b"f") + field(6, b"\xfe")),
            field(4, field(1, field(1, principal))),
            field(6, b"\xed\xa0\x80"),  # a UTF-8-encoded surrogate
        ):
            response = self._register(valid + tail)
            self.assertEqual(response.error.code, 400)
            self.assertTrue(response.error.message.startswith("Invalid protobuf: "))
        self._assert_nothing_issued()

    def test_register_invalid_utf8(self) -> None:
        """A type name or ignored string field that is not UTF-8 gets error 400."""
        valid = register_request().SerializeToString()
        bad_type = actr_pb2.RegisterRequest.FromString(
            b"\x0a\x08\x0a\x02\xff\xfe\x12\x02ab\x12\x02\x08\x01"
        )
        for raw in (bad_type.SerializeToString(), valid + b"\x2a\x01\xff"):
            response = self._register(raw)
            self.assertEqual(response.error.code, 400)
            self.assertEqual(
                response.error.message,
                "Invalid protobuf: invalid string value: data is not UTF-8 encoded",
            )
        self.assertEqual(self.keys.generate_calls, 0)

    def test_register_garbage(self) -> None:
        """Random bytes get error 400, and the service keeps answering."""
        self.assertEqual(self._register(b"\xff\xff\xff\xff").error.code, 400)
        ok = self._register(register_request().SerializeToString())
        self.assertTrue(ok.HasField("success"))

    def test_register_oversize(self) -> None:
        """A body over the limit is 413."""
        code, _, _ = self._call("POST", "/register", b"\x00" * (MAX_BODY + 1))
        self.assertEqual(code, 413)
        self.assertEqual(self.keys.generate_calls, 0)

    def test_register_rate_limited(self) -> None:
        """Past the burst the answer is 429 until a credit returns."""
        raw = register_request().SerializeToString()
        for _ in range(100):
            self._register(raw)
        code, body, response = self._call("POST", "/register", raw)
        self.assertEqual(code, 429)
        self.assertEqual(json.loads(body), {"error": "Too Many Requests", "code": 429})
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"2"])
        self.clock.advance(2)
        self._register(raw)

    def test_health(self) -> None:
        """Health is JSON with the spec's keys."""
        code, body, _ = self._call("GET", "/health")
        self.assertEqual(code, 200)
        self.assertEqual(
            list(json.loads(body)),
            ["service", "version", "status", "database", "ks_service", "key_cache"],
        )

    def test_rotate_requires_credential(self) -> None:
        """rotate-key without, with a bad, or with a replayed credential is refused."""
        self.assertEqual(self._call("POST", "/rotate-key")[0], 401)
        bad = {b"x-actrix-credential": [b"{not json"]}
        self.assertEqual(self._call("POST", "/rotate-key", headers=bad)[0], 401)
        wrong = self._auth("current_key")
        self.assertEqual(self._call("POST", "/rotate-key", headers=wrong)[0], 401)
        self.assertEqual(self.keys.generate_calls, 0)
        good = self._auth("rotate_key")
        code, body, _ = self._call("POST", "/rotate-key", headers=good)
        self.assertEqual(code, 200)
        self.assertEqual(
            json.loads(body),
            {
                "status": "success",
                "message": "Key rotated successfully",
                "new_key_id": 1,
            },
        )
        code, body, _ = self._call("POST", "/rotate-key", headers=good)
        self.assertEqual((code, json.loads(body)["error"]), (403, "Request rejected"))

    def test_rotate_failure(self) -> None:
        """A KS failure during rotation is reported in the JSON body."""
        self.keys.fail = True
        code, body, _ = self._call(
            "POST", "/rotate-key", headers=self._auth("rotate_key")
        )
        self.assertEqual(code, 200)
        self.assertEqual(
            json.loads(body),
            {"status": "error", "message": "Key rotation failed: connection refused"},
        )

    def test_current_key(self) -> None:
        """current-key needs a credential and reports the key id."""
        self.assertEqual(self._call("GET", "/current-key")[0], 401)
        code, body, _ = self._call(
            "GET", "/current-key", headers=self._auth("current_key")
        )
        self.assertEqual(
            (code, json.loads(body)), (200, {"status": "success", "key_id": 1})
        )

    def test_current_key_failure(self) -> None:
        """A KS failure is reported in the JSON body."""
        self.keys.fail = True
        code, body, _ = self._call(
            "GET", "/current-key", headers=self._auth("current_key")
        )
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["status"], "error")

    def test_refresh(self) -> None:
        """refresh with a credential for that ActrId keeps the id."""
        first = self._register(register_request().SerializeToString()).success
        headers = self._auth(f"refresh:{actr_id_repr(first.actr_id)}")
        code, body, _ = self._call(
            "POST", "/refresh", first.actr_id.SerializeToString(), headers
        )
        self.assertEqual(code, 200)
        again = actr_pb2.RegisterResponse.FromString(body).success
        self.assertEqual(again.actr_id, first.actr_id)
        self.assertNotEqual(again.psk, first.psk)

    def test_refresh_with_credential_not_rate_limited(self) -> None:
        """A peer's credentialed refreshes are not throttled by the per-IP limit."""
        first = self._register(register_request().SerializeToString()).success
        raw = first.actr_id.SerializeToString()
        payload = f"refresh:{actr_id_repr(first.actr_id)}"
        for _ in range(150):
            code, body, _ = self._call("POST", "/refresh", raw, self._auth(payload))
            self.assertEqual(code, 200)
            self.assertTrue(
                actr_pb2.RegisterResponse.FromString(body).HasField("success")
            )

    def test_refresh_without_credential_rate_limited(self) -> None:
        """Refreshes without a credential are 401, then 429 once the bucket is empty."""
        codes = [self._call("POST", "/refresh", b"")[0] for _ in range(101)]
        self.assertEqual(codes[:100], [401] * 100)
        self.assertEqual(codes[100], 429)

    def test_surrogate_credential_header(self) -> None:
        """A credential header spelling a lone surrogate is 401, not a crash."""
        header = b'{"timestamp": %d, "nonce": "\\ud800", "signature": "s"}' % NOW
        code, _, _ = self._call(
            "GET", "/current-key", headers={b"x-actrix-credential": [header]}
        )
        self.assertEqual(code, 401)
        self.assertEqual(self.nonces.taken, {})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_refresh_requires_matching_credential(self) -> None:
        """refresh without a credential, or one for another id, is 401."""
        first = self._register(register_request().SerializeToString()).success
        raw = first.actr_id.SerializeToString()
        self.assertEqual(self._call("POST", "/refresh", raw)[0], 401)
        other = self._auth("refresh:1@1/acme:echo")
        self.assertEqual(self._call("POST", "/refresh", raw, other)[0], 401)

    def test_refresh_truncated(self) -> None:
        """A truncated ActrId body gets error 400."""
        code, body, _ = self._call(
            "POST", "/refresh", b"\x0a\x02", self._auth("refresh:x")
        )
        self.assertEqual(code, 200)
        self.assertEqual(actr_pb2.RegisterResponse.FromString(body).error.code, 400)
