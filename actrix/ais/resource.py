"""``/ais`` HTTP API (ais.md §1) plus ``/ais/refresh``.

``register`` is open (any client may ask for an identity) but every route is
behind the per-IP limiter (429), except ``register`` and ``refresh`` requests
that carry a credential (payloads ``register`` and ``refresh:<ActrId repr>``):
they come from a peer node such as signaling and are verified instead.
``rotate-key``, ``current-key`` and ``refresh`` require a nonce-auth credential
signed with ``actrix_shared_key`` in the ``X-Actrix-Credential`` header (JSON
``{timestamp, nonce, signature}``), with payloads ``rotate_key``,
``current_key`` and ``refresh:<ActrId repr>``; the original left rotate-key and
current-key open. Register and refresh answer HTTP 200 with a protobuf
``RegisterResponse`` whose ``error`` carries failures.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from klein import Klein
from twisted.logger import Logger
from twisted.web.server import Request

from actrix.ais.metrics import AisMetrics
from actrix.ais.ratelimit import IpRateLimiter
from actrix.ais.service import IdentityIssuer, KeyUnavailable
from actrix.core.actrid import actr_id_repr
from actrix.core.auth import (
    AuthError,
    CredentialFormatError,
    NonceVerifier,
    credential_from_text,
)
from actrix.core.http import client_ip, survives_disconnect
from actrix.core.http import json_response as _json_body
from actrix.core.logthrottle import LogThrottle
from actrix.proto import actr_pb2

log = Logger()

MAX_BODY: Final = 64 * 1024
CREDENTIAL_HEADER: Final = b"x-actrix-credential"
PROTOBUF: Final = b"application/octet-stream"

M = TypeVar("M", bound=Message)


class AisResource:
    """The Klein app behind ``/ais``."""

    app = Klein()

    def __init__(
        self,
        issuer: IdentityIssuer,
        verifier: NonceVerifier,
        limiter: IpRateLimiter,
        metrics: AisMetrics | None = None,
        throttle: LogThrottle | None = None,
    ) -> None:
        self._issuer = issuer
        self._verifier = verifier
        self._limiter = limiter
        self._metrics = metrics or issuer.metrics
        self._throttle = throttle or LogThrottle(limiter.clock)

    def _warn(self, request: Request, reason: str, text: str, **fields: Any) -> None:
        """A warning a client can cause: one per (peer, reason) per interval."""
        peer = client_ip(request)
        suppressed = self._throttle.admit(peer, reason)
        if suppressed is not None:
            log.warn(
                text + " from {peer} ({suppressed} more not logged)",
                peer=peer,
                suppressed=suppressed,
                **fields,
            )

    # -- helpers -----------------------------------------------------------

    def _limited(self, request: Request) -> bytes | None:
        peer = client_ip(request)
        if self._limiter.allow(peer):
            return None
        self._metrics.rate_limited += 1
        log.debug("AIS rate limit hit by {peer}", peer=peer)
        request.setHeader(b"retry-after", str(self._limiter.retry_after(peer)).encode())
        return json_response(request, 429, {"error": "Too Many Requests", "code": 429})

    async def _authenticate(self, request: Request, payload: str) -> bytes | None:
        header = request.getHeader(CREDENTIAL_HEADER)
        try:
            if header is None:
                raise CredentialFormatError("missing credential header")
            credential = credential_from_text(header)
            await self._verifier.verify(credential, payload)
        except CredentialFormatError:
            self._metrics.auth_failures += 1
            self._warn(request, "ais-credential", "AIS request without a credential")
            return json_response(
                request, 401, {"error": "Authentication failed", "code": 401}
            )
        except AuthError as e:
            self._metrics.auth_failures += 1
            self._warn(
                request, f"ais-{e.kind}", "AIS request refused ({kind})", kind=e.kind
            )
            if e.kind == "replay":
                return json_response(
                    request, 403, {"error": "Request rejected", "code": 403}
                )
            if e.kind == "storage":
                return json_response(
                    request, 500, {"error": "Internal server error", "code": 500}
                )
            if e.kind == "unavailable":
                return json_response(
                    request,
                    503,
                    {
                        "error": "Service unavailable: the nonce store cannot be"
                        " reached",
                        "code": 503,
                    },
                )
            return json_response(
                request, 401, {"error": "Authentication failed", "code": 401}
            )
        return None

    def _body(self, request: Request) -> bytes | None:
        assert request.content is not None  # noqa: S101 (twisted.web sets it)
        raw = request.content.read(MAX_BODY + 1)
        return None if len(raw) > MAX_BODY else raw

    def _too_large(self, request: Request) -> bytes:
        return json_response(
            request, 413, {"error": "Request body too large", "code": 413}
        )

    def _protobuf(self, request: Request, response: actr_pb2.RegisterResponse) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"content-type", PROTOBUF)
        return _sized(request, response.SerializeToString())

    # -- routes ------------------------------------------------------------

    @app.route("/register", methods=["POST"])
    @survives_disconnect
    async def register(self, request: Request) -> bytes:
        # A peer node (signaling) proves itself with a credential (payload
        # ``register``) and is exempt from the per-IP limit, which would
        # otherwise throttle every actor registering through it.
        if request.getHeader(CREDENTIAL_HEADER) is not None:
            refused = await self._authenticate(request, "register")
            if refused is not None:
                return refused
        else:
            limited = self._limited(request)
            if limited is not None:
                return limited
        raw = self._body(request)
        if raw is None:
            return self._too_large(request)
        try:
            register = _decode(actr_pb2.RegisterRequest, raw)
        except DecodeError as e:
            # Refused input counts nothing; registration_errors are failures
            # to issue for a valid request.
            self._warn(
                request,
                "ais-undecodable",
                "AIS register with undecodable body ({size} bytes)",
                size=len(raw),
            )
            return self._protobuf(request, _error(400, f"Invalid protobuf: {e}"))
        return self._protobuf(request, await self._issuer.register(register))

    @app.route("/refresh", methods=["POST"])
    @survives_disconnect
    async def refresh(self, request: Request) -> bytes:
        # Only peer nodes call refresh, always with a credential; like a
        # credentialed register it skips the per-IP limit, which would otherwise
        # throttle every CredentialUpdate relayed through one signaling node.
        if request.getHeader(CREDENTIAL_HEADER) is None:
            limited = self._limited(request)
            if limited is not None:
                return limited
            self._metrics.auth_failures += 1
            return json_response(
                request, 401, {"error": "Authentication failed", "code": 401}
            )
        raw = self._body(request)
        if raw is None:
            return self._too_large(request)
        try:
            actr_id = _decode(actr_pb2.ActrId, raw)
        except DecodeError as e:
            return self._protobuf(request, _error(400, f"Invalid protobuf: {e}"))
        refused = await self._authenticate(request, f"refresh:{actr_id_repr(actr_id)}")
        if refused is not None:
            return refused
        return self._protobuf(request, await self._issuer.refresh(actr_id))

    @app.route("/health", methods=["GET"])
    @survives_disconnect
    async def health(self, request: Request) -> bytes:
        limited = self._limited(request)
        if limited is not None:
            return limited
        return json_response(request, 200, await self._issuer.health())

    @app.route("/rotate-key", methods=["POST"])
    @survives_disconnect
    async def rotate_key(self, request: Request) -> bytes:
        limited = self._limited(request)
        if limited is not None:
            return limited
        refused = await self._authenticate(request, "rotate_key")
        if refused is not None:
            return refused
        try:
            key = await self._issuer.rotate()
        except KeyUnavailable as e:
            log.warn("AIS key rotation failed: {error}", error=e)
            return json_response(
                request,
                200,
                {"status": "error", "message": f"Key rotation failed: {e}"},
            )
        return json_response(
            request,
            200,
            {
                "status": "success",
                "message": "Key rotated successfully",
                "new_key_id": key.key_id,
            },
        )

    @app.route("/current-key", methods=["GET"])
    @survives_disconnect
    async def current_key(self, request: Request) -> bytes:
        limited = self._limited(request)
        if limited is not None:
            return limited
        refused = await self._authenticate(request, "current_key")
        if refused is not None:
            return refused
        try:
            key = await self._issuer.ensure_key()
        except KeyUnavailable as e:
            return json_response(
                request, 200, {"status": "error", "message": f"Failed to get key: {e}"}
            )
        return json_response(request, 200, {"status": "success", "key_id": key.key_id})


def json_response(request: Request, status: int, body: object) -> bytes:
    """JSON with Content-Length, so an async response is not sent chunked."""
    return _sized(request, _json_body(request, status, body))


def _sized(request: Request, body: bytes) -> bytes:
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def _decode(cls: type[M], raw: bytes) -> M:
    """Parse ``raw`` as ``cls``, refusing non-UTF-8 text as the original does.

    upb hands a proto2 ``string`` holding invalid UTF-8 back as ``bytes`` (an
    ActrId would then read ``b'\\xff':echo``); prost refuses the whole message.

    Raises:
        DecodeError: truncated or malformed, or a string is not UTF-8.
    """
    message = cls.FromString(raw)
    if _has_invalid_utf8(message):
        raise DecodeError("invalid string value: data is not UTF-8 encoded")
    return message


def _has_invalid_utf8(message: Message) -> bool:
    for field, value in message.ListFields():
        for item in value if field.is_repeated else (value,):
            if field.type == FieldDescriptor.TYPE_STRING and isinstance(item, bytes):
                return True
            if field.type == FieldDescriptor.TYPE_MESSAGE and _has_invalid_utf8(item):
                return True
    return False


def _error(code: int, message: str) -> actr_pb2.RegisterResponse:
    return actr_pb2.RegisterResponse(
        error=actr_pb2.ErrorResponse(code=code, message=message)
    )
