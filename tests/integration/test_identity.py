"""KS and AIS in a real daemon on loopback: the identity round trip and bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from actrix.ais.client import IdentityClient
from actrix.assembly import StartupError
from actrix.core import tokens
from actrix.core.actrid import actr_id_repr
from actrix.core.auth import sign_credential
from actrix.core.credentials import TokenValidator
from actrix.core.interfaces import CredentialError
from actrix.ks.client import KeyServerClient
from actrix.proto import actr_pb2
from actrix.tap import build_root_service
from tests.daemon import SHARED_KEY, http_client, http_port, make_settings, start_daemon

KS_AIS = 8 | 16
KEY = SHARED_KEY.encode()


async def _wait(d: Deferred[Any], seconds: float = 5.0) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


def _register_request(realm: int = 1001) -> actr_pb2.RegisterRequest:
    return actr_pb2.RegisterRequest(
        actr_type=actr_pb2.ActrType(manufacturer="acme", name="echo"),
        realm=actr_pb2.Realm(realm_id=realm),
    )


class IdentityDaemonTests(TestCase):
    """One daemon with KS and AIS (enable = 24)."""

    timeout = 30

    def setUp(self) -> None:
        self.root = start_daemon(self, make_settings(Path(self.mktemp()), KS_AIS))
        self.base = f"http://127.0.0.1:{http_port(self.root)}"
        self.http: Any = http_client(self)

    async def _json(self, d: Deferred[Any]) -> tuple[int, Any]:
        response = await _wait(d)
        body = await _wait(response.content())
        try:
            return response.code, json.loads(body)
        except ValueError:
            return response.code, body

    async def _secret(self, key_id: int) -> tuple[int, Any]:
        credential = sign_credential(KEY, f"get_secret_key:{key_id}", reactor.seconds())
        query = f"key_id={key_id}&credential={quote(credential.to_header(), safe='')}"
        return await self._json(
            self.http.get(f"{self.base}/ks/secret/{key_id}?{query}")
        )

    async def _register(self) -> actr_pb2.RegisterResponse:
        response = await _wait(
            self.http.post(
                f"{self.base}/ais/register",
                data=_register_request().SerializeToString(),
                headers={b"content-type": [b"application/octet-stream"]},
            )
        )
        self.assertEqual(response.code, 200)
        return actr_pb2.RegisterResponse.FromString(await _wait(response.content()))

    def _auth(self, payload: str) -> dict[bytes, list[bytes]]:
        credential = sign_credential(KEY, payload, reactor.seconds())
        return {b"x-actrix-credential": [credential.to_header().encode()]}

    async def test_identity_round_trip(self) -> None:
        """Generate, fetch, register, decrypt with the fetched secret, rotate, query."""
        credential = sign_credential(KEY, "generate_key", reactor.seconds())
        code, generated = await self._json(
            self.http.post(
                f"{self.base}/ks/generate", json={"credential": credential.to_json()}
            )
        )
        self.assertEqual(code, 200)
        code, secret = await self._secret(generated["key_id"])
        self.assertEqual((code, secret["key_id"]), (200, generated["key_id"]))

        registered = await self._register()
        ok = registered.success
        key_id = ok.credential.token_key_id
        code, secret = await self._secret(key_id)
        self.assertEqual(code, 200)
        claims = tokens.decrypt_token(
            base64.b64decode(secret["secret_key"]), ok.credential.encrypted_token
        )
        self.assertEqual(claims.actor_id, actr_id_repr(ok.actr_id))
        self.assertEqual(claims.psk, ok.psk)

        code, rotated = await self._json(
            self.http.post(
                f"{self.base}/ais/rotate-key", headers=self._auth("rotate_key")
            )
        )
        self.assertEqual((code, rotated["status"]), (200, "success"))
        self.assertGreater(rotated["new_key_id"], key_id)
        code, current = await self._json(
            self.http.get(
                f"{self.base}/ais/current-key", headers=self._auth("current_key")
            )
        )
        self.assertEqual(
            current, {"status": "success", "key_id": rotated["new_key_id"]}
        )
        again = await self._register()
        self.assertEqual(again.success.credential.token_key_id, rotated["new_key_id"])

        refreshed = await _wait(
            self.http.post(
                f"{self.base}/ais/refresh",
                data=ok.actr_id.SerializeToString(),
                headers=self._auth(f"refresh:{actr_id_repr(ok.actr_id)}"),
            )
        )
        body = actr_pb2.RegisterResponse.FromString(await _wait(refreshed.content()))
        self.assertEqual(body.success.actr_id, ok.actr_id)

        code, health = await self._json(self.http.get(f"{self.base}/ais/health"))
        self.assertEqual((code, health["status"]), (200, "healthy"))
        code, health = await self._json(self.http.get(f"{self.base}/ks/health"))
        self.assertEqual((code, health["key_count"]), (200, 3))

    async def test_bad_input_keeps_serving(self) -> None:
        """Malformed requests get their spec status and the daemon keeps serving."""
        generate = f"{self.base}/ks/generate"
        cases = [
            (
                self.http.post(
                    generate,
                    data=b"{",
                    headers={b"content-type": [b"application/json"]},
                ),
                400,
            ),
            (
                self.http.post(
                    generate, data=b"{}", headers={b"content-type": [b"text/plain"]}
                ),
                415,
            ),
            (self.http.post(generate, json={"credential": 5}), 422),
            (
                self.http.post(
                    generate,
                    json={
                        "credential": {"timestamp": 1, "nonce": "n", "signature": "s"}
                    },
                ),
                401,
            ),
            (self.http.get(f"{self.base}/ks/secret/abc?key_id=1"), 400),
            (self.http.get(f"{self.base}/ks/secret/1?key_id=1&credential=%7B"), 400),
            (
                self.http.get(
                    f"{self.base}/ks/secret/99?key_id=99&credential.timestamp=1&credential.nonce=n&credential.signature=%2B"
                ),
                401,
            ),
            (self.http.post(f"{self.base}/ais/rotate-key"), 401),
            (
                self.http.post(
                    generate,
                    data=b"{" * 5000,
                    headers={b"content-type": [b"application/json"]},
                ),
                413,
            ),
        ]
        for d, expected in cases:
            code, _ = await self._json(d)
            self.assertEqual(code, expected)
        code, body = await self._secret(4242)
        self.assertEqual(
            (code, body), (404, {"error": "Resource not found", "code": 404})
        )
        truncated = await _wait(
            self.http.post(
                f"{self.base}/ais/register",
                data=_register_request().SerializeToString()[:-2],
            )
        )
        response = actr_pb2.RegisterResponse.FromString(
            await _wait(truncated.content())
        )
        self.assertEqual(response.error.code, 400)
        self.assertTrue((await self._register()).HasField("success"))
        code, _ = await self._json(self.http.get(f"{self.base}/ks/health"))
        self.assertEqual(code, 200)

    async def test_replayed_nonce_across_services(self) -> None:
        """A nonce used on KS is refused by AIS (one nonce store)."""
        credential = sign_credential(KEY, "rotate_key", reactor.seconds())
        headers = {b"x-actrix-credential": [credential.to_header().encode()]}
        code, _ = await self._json(
            self.http.post(f"{self.base}/ais/rotate-key", headers=headers)
        )
        self.assertEqual(code, 200)
        code, body = await self._json(
            self.http.post(f"{self.base}/ais/rotate-key", headers=headers)
        )
        self.assertEqual((code, body["error"]), (403, "Request rejected"))


class TwoDaemonTests(TestCase):
    """AIS on one daemon using KS on another over HTTP."""

    timeout = 30

    async def test_remote_ks(self) -> None:
        """AIS registers with a remote KS's key; a validator over HTTP accepts it."""
        ks_root = start_daemon(self, make_settings(Path(self.mktemp()), 16))
        ks_url = f"http://127.0.0.1:{http_port(ks_root)}"
        overrides = (
            "[services.ais.dependencies.ks]\n"
            f'endpoint = "{ks_url}"\n'
            "timeout_seconds = 5\n"
        )
        ais_root = start_daemon(
            self, make_settings(Path(self.mktemp()), 8, overrides=overrides)
        )
        client = IdentityClient(
            f"http://127.0.0.1:{http_port(ais_root)}", 5.0, KEY, reactor
        )
        self.addCleanup(client.stopService)
        response = await _wait(
            Deferred.fromCoroutine(client.register(_register_request()))
        )
        ok = response.success
        self.assertTrue(response.HasField("success"), response)

        keys = KeyServerClient(ks_url, 5.0, KEY, reactor)
        self.addCleanup(keys.stopService)
        validator = TokenValidator(keys, reactor)
        claims = await _wait(
            Deferred.fromCoroutine(
                validator.validate(
                    ok.credential.encrypted_token, ok.credential.token_key_id, 1001
                )
            )
        )
        self.assertEqual(claims.actor_id, actr_id_repr(ok.actr_id))
        with self.assertRaises(CredentialError):
            await _wait(
                Deferred.fromCoroutine(
                    validator.validate(
                        ok.credential.encrypted_token, ok.credential.token_key_id, 7
                    )
                )
            )
        refreshed = await _wait(Deferred.fromCoroutine(client.refresh(ok.actr_id)))
        self.assertEqual(refreshed.success.actr_id, ok.actr_id)

    async def test_ais_and_validator_share_remote_ks(self) -> None:
        """AIS and signaling naming one remote KS start, sharing a single client."""
        ks_root = start_daemon(self, make_settings(Path(self.mktemp()), 16))
        table = (
            f'endpoint = "http://127.0.0.1:{http_port(ks_root)}"\ntimeout_seconds = 5\n'
        )
        overrides = (
            f"[services.ais.dependencies.ks]\n{table}"
            f"[services.signaling.dependencies.ks]\n{table}"
        )
        root = start_daemon(
            self, make_settings(Path(self.mktemp()), 8 | 1, overrides=overrides)
        )
        clients = [s for s in root.background if isinstance(s, KeyServerClient)]
        self.assertEqual(len(clients), 1)
        client = IdentityClient(
            f"http://127.0.0.1:{http_port(root)}", 5.0, KEY, reactor
        )
        self.addCleanup(client.stopService)
        response = await _wait(
            Deferred.fromCoroutine(client.register(_register_request()))
        )
        self.assertTrue(response.HasField("success"), response)


class KekStartupTests(TestCase):
    """A wrong KEK refuses to start."""

    def test_wrong_kek_refused(self) -> None:
        """Keys sealed with one KEK make a daemon with another KEK refuse to build."""
        directory = Path(self.mktemp())
        first = make_settings(
            directory, 16, overrides=f'[services.ks]\nkek = "{"11" * 32}"\n'
        )
        root = build_root_service(first, reactor)
        self._seal_one_key(directory, bytes.fromhex("11" * 32))
        for db in root.databases:
            db.close()
        second = make_settings(
            directory, 16, overrides=f'[services.ks]\nkek = "{"22" * 32}"\n'
        )
        with self.assertRaises(StartupError) as ctx:
            build_root_service(second, reactor)
        self.assertIn("KEK", str(ctx.exception))
        self.assertNotIn("22" * 32, str(ctx.exception))

    def _seal_one_key(self, directory: Path, kek: bytes) -> None:
        from actrix.core.storage import connect_sync
        from actrix.ks import kek as kek_mod
        from actrix.ks.store import KS_DB, insert_key_txn

        conn = connect_sync(directory / KS_DB)
        secret = base64.b64encode(b"\x05" * 32).decode()
        insert_key_txn(conn.cursor(), "pub", kek_mod.seal(kek, secret), 1, 0)
        conn.close()


class RemoteKsTlsTests(TestCase):
    """KeyServerClient verifies the KS node's certificate."""

    timeout = 30

    def _ks_over_https(self) -> tuple[str, Path]:
        from tests.certs import write_self_signed

        directory = Path(self.mktemp())
        cert, key = write_self_signed(directory / "tls", "ks.test")
        overrides = (
            'env = "test"\n'
            "[bind.https]\n"
            'domain_name = "ks.test"\nadvertised_ip = "127.0.0.1"\n'
            f'ip = "127.0.0.1"\nport = 0\ncert = "{cert}"\nkey = "{key}"\n'
        )
        root = start_daemon(self, make_settings(directory, 16, overrides=overrides))
        return f"https://127.0.0.1:{http_port(root)}", cert

    async def test_verified_with_ca_cert(self) -> None:
        """With the node's certificate as CA and its name, calls succeed."""
        from actrix.core.config import KsClientConfig

        url, cert = self._ks_over_https()
        config = KsClientConfig(
            url, 5.0, enable_tls=True, tls_domain="ks.test", ca_cert=cert
        )
        client = KeyServerClient.from_config(config, KEY, reactor)
        self.addCleanup(client.stopService)
        record = await _wait(Deferred.fromCoroutine(client.generate_key()))
        secret = await _wait(Deferred.fromCoroutine(client.secret_key(record.key_id)))
        self.assertIsNotNone(secret)

    async def test_untrusted_certificate_refused(self) -> None:
        """Without the CA the self-signed certificate is refused."""
        from actrix.core.config import KsClientConfig
        from actrix.core.interfaces import KeyProviderError

        url, _ = self._ks_over_https()
        config = KsClientConfig(url, 5.0, enable_tls=True, tls_domain="ks.test")
        client = KeyServerClient.from_config(config, KEY, reactor)
        self.addCleanup(client.stopService)
        with self.assertRaises(KeyProviderError):
            await _wait(Deferred.fromCoroutine(client.generate_key()))

    async def test_wrong_name_refused(self) -> None:
        """A certificate for another name is refused even with the CA."""
        from actrix.core.config import KsClientConfig
        from actrix.core.interfaces import KeyProviderError

        url, cert = self._ks_over_https()
        config = KsClientConfig(
            url, 5.0, enable_tls=True, tls_domain="other.test", ca_cert=cert
        )
        client = KeyServerClient.from_config(config, KEY, reactor)
        self.addCleanup(client.stopService)
        with self.assertRaises(KeyProviderError):
            await _wait(Deferred.fromCoroutine(client.generate_key()))
