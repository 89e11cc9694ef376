"""``/ks`` HTTP API (ks.md §2): generate, secret, health.

Handler errors carry the generic JSON body ``{"error": ..., "code": ...}``;
framework-level rejections (content type, JSON syntax, JSON shape, path syntax)
answer like axum's extractors: 415/400/422/400 with a plain-text reason. Bodies
over :data:`MAX_BODY` get 413. Nothing is stored unless the credential verifies.
"""

from __future__ import annotations

import base64
import json
from typing import Final

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from actrix.core.auth import (
    AuthError,
    CredentialFormatError,
    NonceCredential,
    NonceVerifier,
    credential_from_json,
    credential_from_text,
    parse_timestamp,
)
from actrix.core.http import (
    client_ip,
    json_response,
    parse_decimal,
    survives_disconnect,
)
from actrix.core.interfaces import KeyProviderError, KeyStoreUnavailable
from actrix.core.logthrottle import LogThrottle
from actrix.core.storage import StorageUnavailable
from actrix.ks.metrics import KsMetrics
from actrix.ks.service import KeyService

log = Logger()

MAX_BODY: Final = 4096
_U32_MAX: Final = (1 << 32) - 1

_AUTH_FAILED = (401, "Authentication failed")
_REJECTED = (403, "Request rejected")
_INTERNAL = (500, "Internal server error")
_UNAVAILABLE = (503, "Service unavailable: the key store cannot be reached")
_BAD_PARAMS = (400, "Invalid request parameters")
_NOT_FOUND = (404, "Resource not found")


def _auth_status(error: AuthError) -> tuple[int, str]:
    if error.kind == "replay":
        return _REJECTED
    if error.kind == "storage":
        return _INTERNAL
    if error.kind == "unavailable":
        return _UNAVAILABLE
    return _AUTH_FAILED


def _u32(text: str) -> int | None:
    return parse_decimal(text, _U32_MAX)


class KsResource:
    """The Klein app behind ``/ks``."""

    app = Klein()

    def __init__(
        self,
        service: KeyService,
        verifier: NonceVerifier,
        clock: IReactorTime,
        metrics: KsMetrics | None = None,
        throttle: LogThrottle | None = None,
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._clock = clock
        self._metrics = metrics or service.metrics
        self._throttle = throttle or LogThrottle(clock)

    # -- replies -----------------------------------------------------------

    def _json(self, request: Request, status: int, body: object) -> bytes:
        self._metrics.requests[status] += 1
        return _sized(request, json_response(request, status, body))

    def _error(self, request: Request, error: tuple[int, str]) -> bytes:
        status, text = error
        return self._json(request, status, {"error": text, "code": status})

    def _text(self, request: Request, status: int, text: str) -> bytes:
        self._metrics.requests[status] += 1
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return _sized(request, text.encode())

    async def _verify(
        self, request: Request, credential: NonceCredential, payload: str
    ) -> bytes | None:
        try:
            await self._verifier.verify(credential, payload)
        except AuthError as e:
            peer = client_ip(request)
            suppressed = self._throttle.admit(peer, f"ks-{e.kind}")
            if suppressed is not None:
                log.warn(
                    "KS request refused ({kind}) from {peer}"
                    " ({suppressed} more not logged)",
                    kind=e.kind,
                    peer=peer,
                    suppressed=suppressed,
                )
            return self._error(request, _auth_status(e))
        return None

    # -- routes ------------------------------------------------------------

    @app.route("/generate", methods=["POST"])
    @survives_disconnect
    async def generate(self, request: Request) -> bytes:
        content_type = (request.getHeader("content-type") or "").split(";")[0]
        content_type = content_type.strip().lower()
        if not (
            content_type == "application/json"
            or (
                content_type.startswith("application/")
                and content_type.endswith("+json")
            )
        ):
            return self._text(
                request, 415, "Expected request with `Content-Type: application/json`"
            )
        assert request.content is not None  # noqa: S101 (twisted.web sets it)
        raw = request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return self._json(
                request, 413, {"error": "Request body too large", "code": 413}
            )
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: deep nesting
            return self._text(request, 400, "Failed to parse the request body as JSON")
        try:
            if not isinstance(obj, dict) or "credential" not in obj:
                raise CredentialFormatError("missing field `credential`")
            credential = credential_from_json(obj["credential"])
        except CredentialFormatError as e:
            return self._text(
                request,
                422,
                f"Failed to deserialize the JSON body into the target type: {e}",
            )
        refused = await self._verify(request, credential, "generate_key")
        if refused is not None:
            return refused
        try:
            record = await self._service.generate_key()
        except KeyStoreUnavailable:
            return self._error(request, _UNAVAILABLE)
        except KeyProviderError:
            return self._error(request, _INTERNAL)
        return self._json(
            request,
            200,
            {
                "key_id": record.key_id,
                "public_key": base64.b64encode(record.public_key).decode("ascii"),
                "expires_at": record.expires_at,
                "tolerance_seconds": record.tolerance_seconds,
            },
        )

    @app.route("/secret/<path_key_id>", methods=["GET"])
    @survives_disconnect
    async def secret(self, request: Request, path_key_id: str) -> bytes:
        path_id = _u32(path_key_id)
        if path_id is None:
            return self._text(
                request, 400, "Invalid URL: Cannot parse `key_id` to a `u32`"
            )
        args: dict[bytes, list[bytes]] = request.args or {}
        query_id = _u32(_arg(args, "key_id") or "")
        if query_id is None or query_id != path_id:
            return self._error(request, _BAD_PARAMS)
        try:
            credential = _query_credential(args)
        except CredentialFormatError:
            return self._error(request, _BAD_PARAMS)
        refused = await self._verify(request, credential, f"get_secret_key:{path_id}")
        if refused is not None:
            return refused
        try:
            key = await self._service.secret_key(path_id)
        except KeyStoreUnavailable:
            return self._error(request, _UNAVAILABLE)
        except KeyProviderError:
            return self._error(request, _INTERNAL)
        if key is None:
            return self._error(request, _NOT_FOUND)
        return self._json(
            request,
            200,
            {
                "key_id": key.key_id,
                "secret_key": base64.b64encode(key.secret_key).decode("ascii"),
                "expires_at": key.expires_at,
                "tolerance_seconds": key.tolerance_seconds,
            },
        )

    @app.route("/health", methods=["GET"])
    @survives_disconnect
    async def health(self, request: Request) -> bytes:
        try:
            count = await self._service.key_count()
        except StorageUnavailable as e:
            if self._throttle.admit("", "ks-health-storage") is not None:
                log.warn("KS health: {error}", error=e)
            return self._error(request, _UNAVAILABLE)
        except Exception:
            # A probe per second while the database is broken must not write a
            # traceback per second.
            if self._throttle.admit("", "ks-health-storage") is not None:
                log.failure("while counting KS keys")
            return self._error(request, _INTERNAL)
        return self._json(
            request,
            200,
            {
                "status": "healthy",
                "service": "ks",
                "backend": self._service.backend,
                "key_count": count,
                "timestamp": int(self._clock.seconds()),
            },
        )


def _sized(request: Request, body: bytes) -> bytes:
    """Set Content-Length so an async response is not sent chunked."""
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def _arg(args: dict[bytes, list[bytes]], name: str) -> str | None:
    values = args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def _query_credential(args: dict[bytes, list[bytes]]) -> NonceCredential:
    """The credential from one of the three query encodings (ks.md §2.2)."""
    text = _arg(args, "credential")
    if text is not None:
        return credential_from_text(text)
    fields: dict[str, str] = {}
    for field in ("timestamp", "nonce", "signature"):
        value = _arg(args, f"credential.{field}")
        if value is None:
            value = _arg(args, f"credential[{field}]")
        if value is None:
            raise CredentialFormatError(f"missing credential {field}")
        fields[field] = value
    return NonceCredential(
        parse_timestamp(fields["timestamp"]), fields["nonce"], fields["signature"]
    )
