"""``IdentityClient``: the IdentityIssuer of an AIS on another node, over HTTP(S).

``register`` posts a protobuf ``RegisterRequest`` to ``<endpoint>/ais/register``
with a credential (payload ``register``) that exempts it from AIS's per-IP
limit;
``refresh`` posts a protobuf ``ActrId`` to ``<endpoint>/ais/refresh`` with a
nonce-auth credential (payload ``refresh:<ActrId repr>``, signed with
``actrix_shared_key``) in the ``X-Actrix-Credential`` header. Transport, HTTP and
decoding failures come back as a ``RegisterResponse.error`` (code 500, or 429
when AIS rate-limits us), never as exceptions. HTTPS endpoints are verified
against the system roots. Add the client to the root service
(``add_background``) so its idle connections are closed at shutdown.
"""

from __future__ import annotations

from typing import Any

import treq
from google.protobuf.message import DecodeError
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from actrix.core.actrid import actr_id_repr
from actrix.core.auth import sign_credential
from actrix.core.config import Secret
from actrix.core.logthrottle import LogThrottle
from actrix.core.webclient import PooledHttp, build_http_client
from actrix.proto import actr_pb2

log = Logger()

PROTOBUF = b"application/octet-stream"


class IdentityClient(Service):
    """Implements :class:`actrix.core.interfaces.IdentityIssuer` against ``/ais``."""

    def __init__(
        self,
        endpoint: str,
        timeout: float,
        shared_key: Secret | bytes | str,
        reactor: Any,
        http: PooledHttp | None = None,
    ) -> None:
        self._base = endpoint.rstrip("/")
        self._timeout = timeout
        if isinstance(shared_key, Secret):
            shared_key = shared_key.encode()
        elif isinstance(shared_key, str):
            shared_key = shared_key.encode("utf-8")
        self._secret = shared_key
        self._reactor = reactor
        self._http = http or build_http_client(reactor)
        # Actors registering through us drive these calls: while the AIS is
        # down, one line per minute and reason, not one per registration.
        self._throttle = LogThrottle(reactor)
        self.setName("ais-client")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._http.close()

    async def register(
        self, request: actr_pb2.RegisterRequest
    ) -> actr_pb2.RegisterResponse:
        """Register through the remote AIS; failures become error responses."""
        return await self._post(
            "/ais/register",
            request.SerializePartialToString(),
            self._credential("register"),
        )

    async def refresh(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        """A new credential for ``actr_id`` from the remote AIS."""
        return await self._post(
            "/ais/refresh",
            actr_id.SerializePartialToString(),
            self._credential(f"refresh:{actr_id_repr(actr_id)}"),
        )

    def _credential(self, payload: str) -> dict[bytes, list[bytes]]:
        credential = sign_credential(self._secret, payload, self._reactor.seconds())
        return {b"x-actrix-credential": [credential.to_header().encode()]}

    async def _post(
        self, path: str, body: bytes, headers: dict[bytes, list[bytes]]
    ) -> actr_pb2.RegisterResponse:
        headers = {b"content-type": [PROTOBUF], **headers}
        try:
            response = await self._http.client.request(
                "POST",
                self._base + path,
                data=body,
                headers=headers,
                timeout=self._timeout,
                reactor=self._reactor,
            )
            raw = await treq.content(response)
        except Exception as e:
            suppressed = self._throttle.admit(path, type(e).__name__)
            if suppressed is not None:
                log.warn(
                    "AIS call {path} failed: {error} ({suppressed} more not logged)",
                    path=path,
                    error=repr(e),
                    suppressed=suppressed,
                )
            return _error(500, f"AIS request failed: {type(e).__name__}: {e}")
        code = int(response.code)
        if code == 429:
            return _error(429, "AIS rate limit exceeded")
        if code != 200:
            suppressed = self._throttle.admit(path, f"HTTP {code}")
            if suppressed is not None:
                log.warn(
                    "AIS call {path} answered HTTP {code}"
                    " ({suppressed} more not logged)",
                    path=path,
                    code=code,
                    suppressed=suppressed,
                )
            return _error(500, f"AIS returned HTTP {code}")
        try:
            result = actr_pb2.RegisterResponse.FromString(raw)
        except DecodeError as e:
            return _error(500, f"AIS response undecodable: {e}")
        if result.WhichOneof("result") is None:
            return _error(500, "AIS response has no result")
        return result


def _error(code: int, message: str) -> actr_pb2.RegisterResponse:
    return actr_pb2.RegisterResponse(
        error=actr_pb2.ErrorResponse(code=code, message=message)
    )


__all__ = ["IdentityClient"]
