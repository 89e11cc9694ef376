"""``/admin/api/v1``: the admin control API (contract v1, see the README).

Every route runs through :meth:`AdminApi._serve`: security headers, then who
is calling (``Authorization: Bearer <admin token>`` or the console's session
cookie), then for a state change the CSRF header (cookie callers only) and the
token's write right, then the operation, then one audit entry per change.
Errors are JSON ``{"error": code, "message": words}``; a storage outage is
503, our own bug 500 (logged once). Failed logins and wrong bearer tokens are
counted per source IP; past the limit the address gets 429 for the window.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

import actrix
from actrix.admin import live_routes, realm_routes
from actrix.admin.context import AdminContext, Caller
from actrix.admin.lists import ApiError, Page, arg, int_arg, is_text, json_body
from actrix.admin.ports import Revoker
from actrix.admin.redact import changed_keys, redacted_config
from actrix.core import realms
from actrix.core.actrid import actr_id_repr
from actrix.core.config import SERVICE_BITS, ConfigError, load_config
from actrix.core.http import survives_disconnect
from actrix.core.storage import StorageUnavailable

log = Logger()

COOKIE: Final = b"actrix_admin"
CSRF_HEADER: Final = b"x-csrf-token"
# Keys a reload applies without a restart (the daemon's reload hooks).
LIVE_KEYS: Final = frozenset({"observability.filter_level"})
SECURITY_HEADERS: Final = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)

Handler = Callable[..., Awaitable[Any]]


def client_ip(request: Request) -> str:
    return str(getattr(request.getClientAddress(), "host", "") or "?")


class AdminApi:
    """The Klein app behind ``/admin/api`` (routes ``/v1/...``)."""

    app = Klein()

    def __init__(self, context: AdminContext, revoker: Revoker | None) -> None:
        self.ctx = context
        self.revoker = revoker

    # -- plumbing ------------------------------------------------------------

    @survives_disconnect
    async def _serve(
        self,
        request: Request,
        handler: Handler,
        *args: Any,
        write: bool = False,
        public: bool = False,
    ) -> bytes:
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        try:
            if public:
                result = await handler(request, *args)
            else:
                caller = await self._authenticate(request)
                if write:
                    self._may_write(request, caller)
                result = await handler(request, caller, *args)
        except ApiError as e:
            return self._json(request, e.status, e.body())
        except StorageUnavailable as e:
            log.warn("admin API: storage unavailable: {error}", error=e)
            body = {"error": "unavailable", "message": "the database cannot be reached"}
            return self._json(request, 503, body)
        except Exception:
            log.failure(
                "admin API {method} {path}", method=request.method, path=request.path
            )
            body = {"error": "internal", "message": "internal error (logged)"}
            return self._json(request, 500, body)
        if result is None:
            request.setResponseCode(204)
            return b""
        status, body = result if isinstance(result, tuple) else (200, result)
        return self._json(request, status, body)

    def _json(self, request: Request, status: int, body: Any) -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-length", str(len(data)).encode("ascii"))
        return data

    def _refuse_limited(self, ip: str) -> None:
        wait = self.ctx.limiter.retry_after(ip)
        if wait is not None:
            raise ApiError(
                "too_many_requests",
                f"too many failed logins from {ip}; try again in {wait} s",
                retry_after=wait,
            )

    def _failed(self, ip: str) -> ApiError:
        self.ctx.limiter.failed(ip)
        self.ctx.metrics.login_failures += 1
        return ApiError("unauthorized", "the admin token is not valid")

    async def _authenticate(self, request: Request) -> Caller:
        ip = client_ip(request)
        raw = request.getHeader(b"authorization")
        header = None if raw is None else raw.decode("latin-1")
        now = int(self.ctx.clock.seconds())
        if header is not None:
            self._refuse_limited(ip)
            scheme, _, text = header.partition(" ")
            if scheme.lower() != "bearer" or not text.strip():
                raise ApiError("unauthorized", "Authorization must be Bearer <token>")
            token = await self.ctx.store.verify(text.strip(), now)
            if token is None:
                raise self._failed(ip)
            return Caller(token.name, token.id, token.read_only, ip)
        cookie = request.getCookie(COOKIE)
        if cookie is None:
            raise ApiError("unauthorized", "log in first (or send a Bearer token)")
        value = cookie.decode("ascii", "replace")
        session = self.ctx.sessions.get(value)
        if session is None:
            raise ApiError("unauthorized", "the session has expired; log in again")
        if await self.ctx.store.active_token(session.token_id) is None:
            self.ctx.sessions.close_token(session.token_id)
            raise ApiError("unauthorized", "the admin token was revoked")
        caller = Caller(session.name, session.token_id, session.read_only, ip, value)
        request.admin_session = session  # type: ignore[attr-defined]  # for /session
        return caller

    def _may_write(self, request: Request, caller: Caller) -> None:
        if caller.cookie is not None:
            session = self.ctx.sessions.get(caller.cookie)
            if session is None or not session.csrf_ok(request.getHeader(CSRF_HEADER)):
                raise ApiError(
                    "csrf", "missing or wrong X-CSRF-Token header; reload the page"
                )
        if caller.read_only:
            raise ApiError("read_only", f"token {caller.name!r} is read-only")

    async def _audit(
        self, caller: Caller, action: str, target: str, **details: Any
    ) -> None:
        await self.ctx.store.audit(
            self.ctx.clock.seconds(),
            caller.name,
            action,
            target,
            details,
            caller.remote,
        )
        log.info(
            "admin {who} from {remote}: {action} {target}",
            who=caller.name,
            remote=caller.remote,
            action=action,
            target=target,
        )

    @app.handle_errors(NotFound)
    def _not_found(self: Any, request: Any, failure: Failure) -> bytes:
        body: bytes = self._json(
            request, 404, {"error": "not_found", "message": "no such API path"}
        )
        return body

    @app.handle_errors(MethodNotAllowed)
    def _bad_method(self: Any, request: Any, failure: Failure) -> bytes:
        body: bytes = self._json(
            request,
            400,
            {"error": "bad_request", "message": "method not allowed on this path"},
        )
        return body

    # -- authentication ------------------------------------------------------

    def _session_body(self, session: Any) -> dict[str, Any]:
        return {
            "name": session.name,
            "read_only": session.read_only,
            "csrf": session.csrf,
            "expires_at": int(session.expires_at),
        }

    async def _login(self, request: Request) -> dict[str, Any]:
        ip = client_ip(request)
        self._refuse_limited(ip)
        body = json_body(request, {"token": is_text(256)})
        if "token" not in body:
            raise ApiError("bad_request", "field 'token' is required")
        now = int(self.ctx.clock.seconds())
        token = await self.ctx.store.verify(body["token"].strip(), now)
        if token is None:
            log.info("admin login from {ip} refused", ip=ip)
            raise self._failed(ip)
        self.ctx.limiter.succeeded(ip)
        cookie, session = self.ctx.sessions.open(token.id, token.name, token.read_only)
        secure = (
            ""
            if self.ctx.settings.env == "dev" and not request.isSecure()
            else ("; Secure")
        )
        request.responseHeaders.addRawHeader(
            b"set-cookie",
            (
                f"{COOKIE.decode()}={cookie}; HttpOnly{secure}; SameSite=Strict;"
                f" Path=/admin; Max-Age={self.ctx.settings.admin.session_ttl}"
            ).encode("ascii"),
        )
        caller = Caller(token.name, token.id, token.read_only, ip)
        await self._audit(caller, "session.login", token.name)
        return self._session_body(session)

    @app.route("/v1/login", methods=["POST"])
    def login(self, request: Request) -> Any:
        return self._serve(request, self._login, public=True)

    async def _session(self, request: Request, caller: Caller) -> dict[str, Any]:
        session = getattr(request, "admin_session", None)
        if session is None:
            raise ApiError("unauthorized", "no console session (Bearer token used)")
        return self._session_body(session)

    @app.route("/v1/session", methods=["GET"])
    def session(self, request: Request) -> Any:
        return self._serve(request, self._session)

    async def _logout(self, request: Request, caller: Caller) -> None:
        if caller.cookie is not None:
            session = self.ctx.sessions.get(caller.cookie)
            if session is None or not session.csrf_ok(request.getHeader(CSRF_HEADER)):
                raise ApiError("csrf", "missing or wrong X-CSRF-Token header")
            self.ctx.sessions.close(caller.cookie)
        request.responseHeaders.addRawHeader(
            b"set-cookie",
            COOKIE + b"=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0",
        )
        await self._audit(caller, "session.logout", caller.name)

    @app.route("/v1/logout", methods=["POST"])
    def logout(self, request: Request) -> Any:
        # Logging out is allowed to read-only tokens: it changes only the session.
        return self._serve(request, self._logout)

    # -- node ------------------------------------------------------------------

    async def _node(self, request: Request, caller: Caller) -> dict[str, Any]:
        s = self.ctx.settings
        now = self.ctx.clock.seconds()
        return {
            "version": actrix.__version__,
            "node_id": s.name,
            "env": s.env,
            "started_at": int(self.ctx.started_at),
            "uptime_secs": int(now - self.ctx.started_at),
            "services": {name: s.enabled(bit) for name, bit in SERVICE_BITS.items()},
            "draining": self.ctx.draining(),
        }

    @app.route("/v1/node", methods=["GET"])
    def node(self, request: Request) -> Any:
        return self._serve(request, self._node)

    async def _config(self, request: Request, caller: Caller) -> dict[str, Any]:
        return redacted_config(self.ctx.settings)

    @app.route("/v1/node/config", methods=["GET"])
    def node_config(self, request: Request) -> Any:
        return self._serve(request, self._config)

    async def _reload(self, request: Request, caller: Caller) -> dict[str, Any]:
        source = self.ctx.settings.source
        if source is None:
            raise ApiError("unavailable", "the daemon was not started from a file")
        try:
            fresh = load_config(source)
        except ConfigError as e:
            raise ApiError("bad_request", "; ".join(e.problems)) from None
        changed = changed_keys(self.ctx.settings, fresh)
        applied = [k for k in changed if k in LIVE_KEYS]
        self.ctx.reload_hook()  # log level, TLS certificates re-read
        result = {
            "applied": applied,
            "restart_needed": [k for k in changed if k not in LIVE_KEYS],
        }
        await self._audit(caller, "node.reload", str(source), **result)
        return result

    @app.route("/v1/node/reload", methods=["POST"])
    def node_reload(self, request: Request) -> Any:
        return self._serve(request, self._reload, write=True)

    # -- realms ----------------------------------------------------------------

    @app.route("/v1/realms", methods=["GET"])
    def realms_list(self, request: Request) -> Any:
        return self._serve(request, self._realms_list)

    async def _realms_list(self, request: Request, caller: Caller) -> Any:
        return await realm_routes.list_realms(self.ctx, request)

    @app.route("/v1/realms", methods=["POST"])
    def realms_create(self, request: Request) -> Any:
        return self._serve(request, self._realms_create, write=True)

    async def _realms_create(self, request: Request, caller: Caller) -> Any:
        realm = await realm_routes.create_realm(self.ctx, request)
        await self._audit(caller, "realm.create", str(realm["id"]), name=realm["name"])
        return 201, realm

    @app.route("/v1/realms/<realm>", methods=["GET", "PATCH", "DELETE"])
    def realm_one(self, request: Request, realm: str) -> Any:
        method = request.method
        if method == b"GET":
            return self._serve(request, self._realm_get, realm)
        handler = self._realm_patch if method == b"PATCH" else self._realm_delete
        return self._serve(request, handler, realm, write=True)

    async def _realm_get(self, request: Request, caller: Caller, realm: str) -> Any:
        return await realm_routes.get_realm(self.ctx, realm_routes.realm_id_of(realm))

    async def _realm_patch(self, request: Request, caller: Caller, realm: str) -> Any:
        realm_id = realm_routes.realm_id_of(realm)
        updated = await realm_routes.patch_realm(self.ctx, request, realm_id)
        await self._audit(
            caller,
            "realm.update",
            str(realm_id),
            name=updated["name"],
            expires_at=updated["expires_at"],
            version=updated["version"],
        )
        return updated

    async def _realm_delete(self, request: Request, caller: Caller, realm: str) -> None:
        realm_id = realm_routes.realm_id_of(realm)
        await realm_routes.delete_realm(self.ctx, realm_id)
        await self._audit(caller, "realm.delete", str(realm_id))

    @app.route("/v1/realms/<realm>/suspend", methods=["POST"])
    def realm_suspend(self, request: Request, realm: str) -> Any:
        return self._serve(request, self._realm_suspend, realm, write=True)

    async def _realm_suspend(self, request: Request, caller: Caller, realm: str) -> Any:
        realm_id = realm_routes.realm_id_of(realm)
        reason = realm_routes.reason_of(request, "suspended by an operator")
        updated = await realm_routes.set_status(
            self.ctx, realm_id, realms.STATUS_SUSPENDED
        )
        await self._audit(caller, "realm.suspend", str(realm_id), reason=reason)
        if self.revoker is not None:
            result = await self.revoker.suspend_realm(realm_id, reason)
            log.info(
                "realm {realm} suspended: {counts}",
                realm=realm_id,
                counts=_counts(result),
            )
        return updated

    @app.route("/v1/realms/<realm>/resume", methods=["POST"])
    def realm_resume(self, request: Request, realm: str) -> Any:
        return self._serve(request, self._realm_resume, realm, write=True)

    async def _realm_resume(self, request: Request, caller: Caller, realm: str) -> Any:
        realm_id = realm_routes.realm_id_of(realm)
        json_body(request, {})
        updated = await realm_routes.set_status(
            self.ctx, realm_id, realms.STATUS_ACTIVE
        )
        await self._audit(caller, "realm.resume", str(realm_id))
        return updated

    # -- ACL -------------------------------------------------------------------

    @app.route("/v1/acl", methods=["GET"])
    def acl_list(self, request: Request) -> Any:
        return self._serve(request, self._acl_list)

    async def _acl_list(self, request: Request, caller: Caller) -> Any:
        return await realm_routes.list_acl(self.ctx, request)

    @app.route("/v1/acl", methods=["POST"])
    def acl_add(self, request: Request) -> Any:
        return self._serve(request, self._acl_add, write=True)

    async def _acl_add(self, request: Request, caller: Caller) -> Any:
        rule = await realm_routes.add_acl(self.ctx, request)
        await self._audit(caller, "acl.add", str(rule["id"]), **_without_id(rule))
        return 201, rule

    @app.route("/v1/acl/<rule>", methods=["DELETE"])
    def acl_remove(self, request: Request, rule: str) -> Any:
        return self._serve(request, self._acl_remove, rule, write=True)

    async def _acl_remove(self, request: Request, caller: Caller, rule: str) -> None:
        rule_id = realm_routes.realm_id_of(rule, "rule id")
        removed = await realm_routes.remove_acl(self.ctx, rule_id)
        await self._audit(caller, "acl.remove", str(rule_id), **_without_id(removed))

    # -- actors ------------------------------------------------------------------

    @app.route("/v1/actors", methods=["GET"])
    def actors_list(self, request: Request) -> Any:
        return self._serve(request, self._actors_list)

    async def _actors_list(self, request: Request, caller: Caller) -> Any:
        return await live_routes.list_actors(self.ctx, request)

    @app.route("/v1/actors/<path:actor>", methods=["GET", "POST"])
    def actor_one(self, request: Request, actor: str) -> Any:
        if actor.endswith("/revoke") and request.method == b"POST":
            return self._serve(
                request, self._actor_revoke, actor[: -len("/revoke")], write=True
            )
        if request.method != b"GET":
            return self._serve(request, self._no_such_action, public=True)
        return self._serve(request, self._actor_get, actor)

    async def _no_such_action(self, request: Request) -> Any:
        raise ApiError("not_found", "no such API path")

    async def _actor_get(self, request: Request, caller: Caller, actor: str) -> Any:
        found = await live_routes.find_actor(self.ctx, actor)
        return live_routes.actor_json(found, self.ctx)

    async def _actor_revoke(self, request: Request, caller: Caller, actor: str) -> Any:
        if self.revoker is None:
            raise ApiError(
                "unavailable", "revocation is not available in this daemon build"
            )
        reason = realm_routes.reason_of(request, "revoked by an operator")
        entry = await live_routes.find_actor(self.ctx, actor)
        result = await self.revoker.revoke_actor(entry.actr_id, reason)
        counts = _counts(result)
        await self._audit(
            caller, "actor.revoke", actr_id_repr(entry.actr_id), reason=reason, **counts
        )
        return {"revoked": True, **counts}

    # -- rooms -------------------------------------------------------------------

    @app.route("/v1/rooms", methods=["GET"])
    def rooms_list(self, request: Request) -> Any:
        return self._serve(request, self._rooms_list)

    async def _rooms_list(self, request: Request, caller: Caller) -> Any:
        return live_routes.list_rooms(self.ctx, request)

    @app.route("/v1/rooms/<room>", methods=["GET"])
    def room_get(self, request: Request, room: str) -> Any:
        return self._serve(request, self._room_get, room)

    async def _room_get(self, request: Request, caller: Caller, room: str) -> Any:
        return live_routes.room_detail(self.ctx, room)

    @app.route("/v1/rooms/<room>/close", methods=["POST"])
    def room_close(self, request: Request, room: str) -> Any:
        return self._serve(request, self._room_close, room, write=True)

    async def _room_close(self, request: Request, caller: Caller, room: str) -> None:
        found = live_routes.find_room(self.ctx, room)
        peers = len(found.members)
        assert self.ctx.rooms is not None  # noqa: S101 (find_room found it)
        self.ctx.rooms.close_room(room)
        await self._audit(caller, "room.close", room, peers=peers)

    @app.route("/v1/rooms/<room>/peers/<peer>/kick", methods=["POST"])
    def room_kick(self, request: Request, room: str, peer: str) -> Any:
        return self._serve(request, self._room_kick, room, peer, write=True)

    async def _room_kick(
        self, request: Request, caller: Caller, room: str, peer: str
    ) -> None:
        live_routes.find_room(self.ctx, room)
        assert self.ctx.rooms is not None  # noqa: S101 (find_room found it)
        if not self.ctx.rooms.kick(room, peer):
            raise ApiError("not_found", f"peer {peer!r} is not in room {room!r}")
        await self._audit(caller, "room.kick", f"{room}/{peer}")

    # -- TURN ----------------------------------------------------------------------

    @app.route("/v1/turn/allocations", methods=["GET"])
    def allocations_list(self, request: Request) -> Any:
        return self._serve(request, self._allocations_list)

    async def _allocations_list(self, request: Request, caller: Caller) -> Any:
        return live_routes.list_allocations(self.ctx, request)

    @app.route("/v1/turn/allocations/<alloc>/terminate", methods=["POST"])
    def allocation_terminate(self, request: Request, alloc: str) -> Any:
        return self._serve(request, self._allocation_terminate, alloc, write=True)

    async def _allocation_terminate(
        self, request: Request, caller: Caller, alloc: str
    ) -> None:
        allocation = live_routes.find_allocation(self.ctx, alloc)
        item = live_routes.allocation_json(allocation, self.ctx.settings.turn.realm)
        assert self.ctx.turn is not None  # noqa: S101 (found there)
        self.ctx.turn.terminate(allocation)
        await self._audit(
            caller,
            "turn.terminate",
            alloc,
            username=item["username"],
            client=item["client"],
        )

    # -- metrics and audit -----------------------------------------------------------

    @app.route("/v1/metrics/series", methods=["GET"])
    def series(self, request: Request) -> Any:
        return self._serve(request, self._series)

    async def _series(self, request: Request, caller: Caller) -> Any:
        resolution = arg(request, "resolution") or "1s"
        if resolution not in ("1s", "1m"):
            raise ApiError("bad_request", "resolution must be 1s or 1m")
        since = int_arg(request, "since") or 0
        sampler = self.ctx.sampler
        ring = sampler.seconds if resolution == "1s" else sampler.minutes
        return ring.read(since)

    @app.route("/v1/audit", methods=["GET"])
    def audit(self, request: Request) -> Any:
        return self._serve(request, self._audit_list)

    async def _audit_list(self, request: Request, caller: Caller) -> Any:
        page = Page(request, ("at",), "at")
        total, entries = await self.ctx.store.list_audit(
            arg(request, "action"), arg(request, "who"), page.limit, page.offset
        )
        return {
            "items": [e.to_json() for e in entries],
            "total": total,
            "limit": page.limit,
            "offset": page.offset,
        }


def _counts(result: Any) -> dict[str, int]:
    return {
        "sockets_closed": int(result.sockets_closed),
        "allocations_terminated": int(result.allocations_terminated),
        "room_peers_removed": int(result.room_peers_removed),
    }


def _without_id(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "id"}
