"""Room HTTP resources: ``/api/*`` (rooms.md §6) and ``/rooms/{health,demo}``.

GETs are authenticated with the bearer token (``services.rooms.api_token``, else
``observability.metrics.token``) or a nonce-auth ``X-Actrix-Credential`` over
``rooms_api:GET <path>``; with no bearer token configured and ``env = "dev"``
they are open. ``POST /api/rooms/tokens`` always needs nonce-auth in its body.
"""

from __future__ import annotations

import hmac
import json
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File

from actrix.core.auth import (
    AuthError,
    CredentialFormatError,
    NonceVerifier,
    credential_from_json,
    credential_from_text,
)
from actrix.core.http import client_ip
from actrix.core.logthrottle import LogThrottle
from actrix.core.roomtokens import canonical_json
from actrix.rooms.grants import MintError
from actrix.rooms.service import RoomService

log = Logger()

CORS: Final = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Content-Type, Authorization, X-Actrix-Credential",
    ),
)
_MINT_KEYS: Final = frozenset(
    ("credential", "realm_id", "room", "role", "peer", "ttl", "max_uses")
)


def rfc3339_ms(ms: int) -> str:
    """UTC RFC 3339 with a 1-6 digit fraction, trailing zeros dropped (Go style)."""
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _cors(request: Request) -> None:
    for name, value in CORS:
        request.setHeader(name, value)


def _json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _text(request: Request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode()


class RoomsHealth(Resource):
    """``GET /rooms/health``: altair's body, no auth."""

    isLeaf = True

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self._clock = clock

    def render_GET(self, request: Request) -> bytes:
        _cors(request)
        return _json(
            request,
            200,
            {"status": "ok", "timestamp": int(self._clock.seconds() * 1000)},
        )

    def render_OPTIONS(self, request: Request) -> bytes:
        _cors(request)
        return b""


class ApiResource(Resource):
    """Everything under ``/api``."""

    isLeaf = True

    def __init__(
        self,
        service: RoomService,
        verifier: NonceVerifier,
        bearer: str | None,
        open_in_dev: bool,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self._service = service
        self._verifier = verifier
        self._bearer = bearer
        self._open = open_in_dev and bearer is None
        # Refusals any client can cause: one line per IP and reason a minute.
        self._log_throttle = LogThrottle(clock)

    def render(self, request: Request) -> bytes | int:
        _cors(request)
        method = request.method
        path = request.path.decode("latin-1")
        if method == b"OPTIONS":
            request.setResponseCode(200)
            return b""
        if path == "/api/rooms/tokens":
            if method != b"POST":
                return _text(request, 405, "method not allowed\n")
            self._finish(request, self._mint(request))
            return NOT_DONE_YET
        if path not in ("/api/stats", "/api/rooms") and not path.startswith(
            "/api/rooms/"
        ):
            return _json(request, 404, {"error": "not found", "path": path})
        if method not in (b"GET", b"HEAD"):
            return _text(request, 405, "method not allowed\n")
        self._finish(request, self._get(request, path))
        return NOT_DONE_YET

    def _finish(self, request: Request, work: Any) -> None:
        d = Deferred.fromCoroutine(work)

        def done(body: bytes) -> None:
            if not request.finished and not request._disconnected:
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            log.failure("rooms API request", failure)
            if not request.finished and not request._disconnected:
                request.write(
                    _json(request, 500, {"error": "Internal server error", "code": 500})
                )
                request.finish()

        d.addCallbacks(done, failed)

    def _refused(
        self, request: Request, what: str, text: str, error: Exception
    ) -> None:
        """One line per client IP and kind of refusal a minute."""
        ip = client_ip(request)
        reason = getattr(error, "kind", None) or str(error)
        suppressed = self._log_throttle.admit(ip, f"{what}:{reason}"[:80])
        if suppressed is not None:
            log.info(
                text + " (from {ip}; {suppressed} more not logged)",
                reason=reason,
                ip=ip,
                suppressed=suppressed,
            )

    async def _authorized(self, request: Request, path: str) -> bool:
        if self._open:
            return True
        header = request.getHeader(b"authorization")
        if header is not None and self._bearer is not None:
            scheme, _, value = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode(), self._bearer.encode()
            ):
                return True
        credential = request.getHeader(b"x-actrix-credential")
        if credential is None:
            return False
        try:
            parsed = credential_from_text(credential)
            await self._verifier.verify(parsed, f"rooms_api:GET {path}")
        except (CredentialFormatError, AuthError) as e:
            self._refused(request, "api", "rooms API credential refused: {reason}", e)
            return False
        return True

    async def _get(self, request: Request, path: str) -> bytes:
        if not await self._authorized(request, path):
            return _text(request, 401, "unauthorized\n")
        service = self._service
        if path == "/api/stats":
            return _json(request, 200, service.stats())
        if path == "/api/rooms":
            realm_filter = request.args.get(b"realm_id")
            wanted: int | None = None
            if realm_filter:
                try:
                    wanted = int(realm_filter[0])
                except ValueError:
                    return _text(request, 400, "invalid realm_id\n")
            rooms = sorted(
                (r for r in service.rooms() if wanted is None or r.realm_id == wanted),
                key=lambda r: r.created_at,
            )
            return _json(
                request,
                200,
                {
                    "rooms": [
                        {
                            "id": r.room_id,
                            "peer_count": len(r.members),
                            "max_peers": r.max_peers,
                            "created_at": rfc3339_ms(r.created_at),
                            "realm_id": r.realm_id,
                            "persistent": r.persistent,
                        }
                        for r in rooms
                    ]
                },
            )
        raw = request.uri.split(b"?", 1)[0].decode("latin-1")
        room_id = unquote(raw[len("/api/rooms/") :], errors="strict")
        if not room_id:
            return _text(request, 400, "room ID required\n")
        room = service.room(room_id)
        if room is None:
            return _text(request, 404, "room not found\n")
        view = room.view()
        return _json(
            request,
            200,
            {
                "created_at": view.created_at,
                "id": view.room_id,
                "max_peers": view.max_peers,
                "peer_count": len(view.peers),
                "peers": [p.to_json() for p in view.peers],
                "realm_id": view.realm_id,
            },
        )

    async def _mint(self, request: Request) -> bytes:
        def error(status: int, text: str) -> bytes:
            return _json(request, status, {"error": text, "code": status})

        try:
            body = json.loads(request.content.read() if request.content else b"")
        except (ValueError, RecursionError):
            return error(400, "Invalid request parameters")
        if not isinstance(body, dict) or not set(body) <= _MINT_KEYS:
            return error(400, "Invalid request parameters")
        try:
            credential = credential_from_json(body.get("credential"))
        except CredentialFormatError:
            return error(401, "Authentication failed")
        rest = {k: v for k, v in body.items() if k != "credential"}
        try:
            await self._verifier.verify(
                credential, "room_token:" + canonical_json(rest).decode()
            )
        except AuthError as e:
            self._refused(request, "mint", "room token request refused: {reason}", e)
            if e.kind == "replay":
                return error(403, "Request rejected")
            if e.kind == "storage":
                return error(500, "Internal server error")
            return error(401, "Authentication failed")
        try:
            token, claims = await self._service.authorizer.mint_request(rest)
        except MintError as e:
            return error(e.status, e.text)
        log.info(
            "room token minted for realm {realm} room {room}",
            realm=claims.realm_id,
            room=claims.room,
        )
        return _json(
            request,
            200,
            {
                "token": token,
                "expires_at": claims.exp,
                "kid": claims.kid,
                "claims": claims.to_json(),
            },
        )


def demo_directory() -> Path:
    """Where the demo page's static files are installed."""
    return Path(str(resources.files("actrix.rooms").joinpath("demo")))


class RoomsRoot(Resource):
    """``/rooms``: ``ws``, ``bin``, ``health`` and ``demo``."""

    def __init__(self, json_ws: Any, binary_ws: Any, clock: IReactorTime) -> None:
        super().__init__()
        self.putChild(b"ws", json_ws)
        self.putChild(b"bin", binary_ws)
        self.putChild(b"health", RoomsHealth(clock))
        demo = File(str(demo_directory()), defaultType="text/plain")
        demo.contentTypes = {
            **demo.contentTypes,
            ".js": "text/javascript",
            ".css": "text/css",
        }
        demo.indexNames = ["index.html"]
        self.putChild(b"demo", demo)
