"""``KeyServerClient``: the KeyProvider of a KS on another node, over HTTP(S).

Config mapping: the original's consumers speak gRPC to ``dependencies.ks``; ours
speak the equivalent KS HTTP API. ``endpoint`` is the remote node's HTTP(S) base
URL (e.g. ``http://10.0.0.5:8080``; the client calls ``/ks/generate`` and
``/ks/secret/{id}`` under it). ``enable_tls = true`` turns an ``http://``
endpoint into ``https://``; certificates are verified against ``ca_cert`` (or the
system roots) for the name ``tls_domain`` (or the endpoint's host), and
``client_cert``/``client_key`` are presented when given. ``timeout_seconds``
bounds each call. Every call carries a fresh nonce-auth credential signed with
``actrix_shared_key``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import treq
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from actrix.core.auth import sign_credential
from actrix.core.config import KsClientConfig
from actrix.core.interfaces import KeyProviderError, KeyRecord, SecretKey
from actrix.core.webclient import PooledHttp, build_http_client

log = Logger()


class KeyServerClient(Service):
    """Implements :class:`actrix.core.interfaces.KeyProvider` against ``/ks``."""

    def __init__(
        self,
        endpoint: str,
        timeout: float,
        shared_key: bytes,
        reactor: Any,
        http: PooledHttp | None = None,
        config: KsClientConfig | None = None,
    ) -> None:
        if config is not None and config.enable_tls and endpoint.startswith("http://"):
            endpoint = "https://" + endpoint[len("http://") :]
        parts = urlsplit(endpoint)
        self._base = urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")
        )
        self._timeout = timeout
        self._secret = shared_key
        self._reactor = reactor
        self._http = http or build_http_client(reactor, config)
        self.config = config
        self.setName(f"ks-client {parts.netloc}")

    @classmethod
    def from_config(
        cls, config: KsClientConfig, shared_key: bytes, reactor: Any
    ) -> KeyServerClient:
        """A client for a ``dependencies.ks`` table."""
        return cls(
            config.endpoint, config.timeout_seconds, shared_key, reactor, config=config
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._http.close()

    async def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            response = await self._http.client.request(
                method, url, timeout=self._timeout, reactor=self._reactor, **kwargs
            )
            body = await treq.content(response)
        except Exception as e:
            raise KeyProviderError(f"KS request failed: {type(e).__name__}: {e}") from e
        code = int(response.code)
        try:
            return code, json.loads(body)
        except ValueError:
            return code, None

    async def generate_key(self) -> KeyRecord:
        """A new key pair from the remote KS. Raises KeyProviderError."""
        credential = sign_credential(
            self._secret, "generate_key", self._reactor.seconds()
        )
        code, body = await self._call(
            "POST",
            f"{self._base}/ks/generate",
            json={"credential": credential.to_json()},
        )
        if code != 200 or not isinstance(body, dict):
            raise KeyProviderError(f"KS generate failed: HTTP {code} {_error_of(body)}")
        try:
            public = _b64(body["public_key"])
            record = KeyRecord(
                _uint(body["key_id"]),
                public,
                _uint(body["expires_at"]),
                _uint(body["tolerance_seconds"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise KeyProviderError(f"KS generate: malformed response ({e})") from e
        if len(public) != 33:
            raise KeyProviderError("KS generate: public key is not 33 bytes")
        return record

    async def secret_key(self, key_id: int) -> SecretKey | None:
        """The secret of ``key_id``; None on 404. Raises KeyProviderError."""
        payload = f"get_secret_key:{key_id}"
        credential = sign_credential(self._secret, payload, self._reactor.seconds())
        query = f"key_id={key_id}&credential={quote(credential.to_header(), safe='')}"
        code, body = await self._call("GET", f"{self._base}/ks/secret/{key_id}?{query}")
        if code == 404:
            return None
        if code != 200 or not isinstance(body, dict):
            raise KeyProviderError(f"KS secret failed: HTTP {code} {_error_of(body)}")
        try:
            secret = _b64(body["secret_key"])
            result = SecretKey(
                _uint(body["key_id"]),
                secret,
                _uint(body["expires_at"]),
                _uint(body["tolerance_seconds"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise KeyProviderError(f"KS secret: malformed response ({e})") from e
        if len(secret) != 32 or result.key_id != key_id:
            raise KeyProviderError("KS secret: wrong key length or id")
        return result


def _error_of(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return ""


def _uint(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not an unsigned integer")
    return value


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError("not base64") from e
