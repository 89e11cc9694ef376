"""The daemon's one HTTP(S) site: ``/health`` plus mount points for the services.

Services mount their resources with :meth:`SiteRoot.mount` (``/ks``, ``/ais``,
``/signaling``, ``/metrics``); Klein apps go behind :class:`KleinGuard` and their
routes wear :func:`survives_disconnect`. Request bodies are capped (``MAX_BODY``):
a larger ``Content-Length`` gets 413 before the body is read, and a chunked body
that grows past the cap is cut off the same way. :class:`ActrixChannel` bounds
how long a client may take (``request_timeout``, ``idle_timeout``); what a client
can make us log goes through a :class:`LogThrottle`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import actrix
from actrix.core.logthrottle import LogThrottle

log = Logger()

MAX_BODY: Final = 1024 * 1024

P = ParamSpec("P")
T = TypeVar("T")


class LimitedRequest(Request):
    """A request that refuses bodies larger than the site's ``max_body``."""

    _too_large = False
    _received = 0

    def _max_body(self) -> int:
        site = getattr(self.channel, "site", None)
        return int(getattr(site, "max_body", MAX_BODY))

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._max_body():
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self._max_body():
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._too_large = True
        channel = self.channel
        if channel is None or channel.transport is None:
            return
        body = json.dumps({"error": "Request body too large", "code": 413}).encode()
        channel.transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        channel.transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._too_large:
            return
        super().requestReceived(command, path, version)


def parse_decimal(text: str, maximum: int) -> int | None:
    """An ASCII decimal in ``0..maximum`` from a path or query; None if it is not.

    Leading zeros are allowed, as Rust's integer parsers allow them; the
    significant digits are counted before ``int()`` runs, so a parameter of
    thousands of digits costs a length check (``int()`` would raise past 4 300
    digits and is quadratic below that).
    """
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0")
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits) if digits else 0
    return value if value <= maximum else None


def client_ip(request: Request) -> str:
    """The peer's IP address of ``request`` ("?" when it has none)."""
    address: Any = request.getClientAddress()
    return str(getattr(address, "host", "?"))


def json_response(request: Request, status: int, body: object) -> bytes:
    """Set status and JSON content type; return the encoded body."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, separators=(",", ":")).encode()


def survives_disconnect(
    route: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Deferred[T]]:
    """Let a Klein route run to its end when the client leaves early.

    Klein cancels a route's Deferred when the connection is lost. Inside a
    coroutine that raises ``CancelledError`` at whatever it awaits (a database
    call, the nonce store, the crypto pool), where ``except Exception`` blocks
    log it as our failure. A client leaving is normal, so the route's work is
    never cancelled: the answer Klein holds ignores ``cancel()`` (Klein then
    drops the request quietly), the work finishes (a key generated is stored,
    a nonce consumed) and its reply is discarded. A failure that surfaces only
    after the client left is still logged: it is ours.
    """

    @functools.wraps(route)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        work = Deferred.fromCoroutine(route(*args, **kwargs))
        if work.called:
            return work  # finished without waiting: nothing to cancel
        answer: Deferred[T] = Deferred(_keep_running)

        def deliver(result: T | Failure) -> None:
            if not answer.called:
                if isinstance(result, Failure):
                    answer.errback(result)
                else:
                    answer.callback(result)
            elif isinstance(result, Failure):
                log.failure(
                    "route {route} failed after its client left",
                    result,
                    route=route.__qualname__,
                )

        work.addBoth(deliver)
        return answer

    return run


def _keep_running(answer: Deferred[Any]) -> None:
    """Canceller that leaves the work alone; Deferred.cancel fails ``answer``."""


class KleinGuard(Resource):
    """Serves a Klein app, refusing URLs Klein cannot decode without logging.

    Klein logs a failure (``Invalid encoding in PATH_INFO``) for every request
    whose path or host is not UTF-8, so any client could write error lines at
    will; such requests get the same 400 here, silently.
    """

    isLeaf = True

    def __init__(self, app_resource: Resource) -> None:
        super().__init__()
        self._app = app_resource

    def render(self, request: Request) -> bytes | int:
        parts = [
            request.getRequestHostname(),
            *(request.prepath or ()),
            *(request.postpath or ()),
        ]
        try:
            for part in parts:
                part.decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Non-UTF-8 encoding in URL."
        rendered: bytes | int = self._app.render(request)
        return rendered


class HealthResource(Resource):
    """``GET /health``: status, version, enabled services, uptime.

    ``details`` adds one object per service (TURN: ``draining``,
    ``allocations``); a service whose object says ``"draining": true`` makes
    the status ``draining`` (unless something failed: ``degraded``) and is
    listed under ``draining``. The HTTP status stays 200.
    """

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        name: str,
        services: tuple[str, ...],
        checks: dict[str, Callable[[], bool]] | None = None,
        details: dict[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._started = clock.seconds()
        self._name = name
        self._services = services
        self._checks = checks or {}
        self._details = details or {}

    def render_GET(self, request: Request) -> bytes:
        failed = sorted(k for k, check in self._checks.items() if not check())
        details = {name: detail() for name, detail in self._details.items()}
        draining = sorted(n for n, d in details.items() if d.get("draining"))
        status = "degraded" if failed else "draining" if draining else "ok"
        body: dict[str, Any] = {
            "status": status,
            "version": actrix.__version__,
            "name": self._name,
            "services": list(self._services),
            "uptime_seconds": int(self._clock.seconds() - self._started),
        }
        if failed:
            body["failed"] = failed
        if draining:
            body["draining"] = draining
        body.update(details)
        return json_response(request, 200, body)


class SiteRoot(Resource):
    """The resource tree root; 404 for anything not mounted.

    ``root_upgrade``: a WebSocket resource that WebSocket upgrades of ``/`` go
    to (the rooms binary alias for clients that dial ``ws://host:port``).
    """

    root_upgrade: Resource | Any = None

    def getChild(self, path: bytes, request: Request) -> Resource:
        if (
            path == b""
            and self.root_upgrade is not None
            and request.getHeader(b"upgrade") is not None
        ):
            return self.root_upgrade
        child: Resource = super().getChild(path, request)
        return child

    def mount(self, name: str, resource: Resource | Any) -> None:
        """Serve ``resource`` under ``/<name>``."""
        self.putChild(name.encode("ascii"), resource)

    def render_GET(self, request: Request) -> bytes:
        return json_response(request, 404, {"error": "Not found", "code": 404})


@attrs.frozen
class SiteLimits:
    """How long a client may take, and how much it may send (``bind.http*``)."""

    request_timeout: float = 30.0
    idle_timeout: float = 60.0
    max_body: int = MAX_BODY


class ActrixChannel(http.HTTPChannel):
    """HTTPChannel with a deadline on each request's head and body.

    Twisted's own ``timeOut`` is an idle timeout: every byte resets it, so a
    client sending one byte per minute holds its socket forever (and the default
    is 12 h). Here the site's ``idle_timeout`` still bounds silence, and the
    head and body of a request must also arrive within ``request_timeout`` of
    its first byte, or the client gets 408 and the connection is closed.

    Twisted stops both clocks while a request is being answered
    (``allContentReceived``). A WebSocket upgrade is such a request that never
    ends: Autobahn takes the transport, the channel sees no more data, so
    neither clock can end a long-lived WebSocket session (its own pings and
    timeouts govern it).
    """

    request_timeout: float = 30.0  # the site sets its own
    throttle: LogThrottle | None = None
    site: Site | None = None
    _deadline: IDelayedCall | None = None
    _answering = False

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is None and not self._answering:
            self._deadline = self.callLater(self.request_timeout, self._too_slow)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._stop_deadline()
        self._answering = True
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        self._answering = False
        # Pipelined bytes are replayed through dataReceived from here, which
        # starts the next request's deadline.
        super().requestDone(request)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]  # HTTPChannel is unannotated
        self._stop_deadline()
        super().connectionLost(reason)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if transport is None or getattr(transport, "disconnecting", False):
            return  # taken over, or already closing (a 413 was sent)
        self._note("request-timeout", "HTTP request from {peer} too slow, closing")
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"Connection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self._close()

    def timeoutConnection(self) -> None:
        # HTTPChannel logs one info line per idle client; they are the remote
        # side's to cause, so they go through the throttle instead.
        if self.transport is None:
            return
        self._note("idle-timeout", "HTTP client {peer} idle, closing")
        self._close()

    def _close(self) -> None:
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(
                self.abortTimeout, self.forceAbortClient
            )
        self.loseConnection()

    def forceAbortClient(self) -> None:
        self._abortingCall = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _note(self, reason: str, text: str) -> None:
        transport: Any = self.transport
        peer = str(getattr(transport.getPeer(), "host", "?"))
        if self.throttle is None:
            log.debug(text, peer=peer)
            return
        suppressed = self.throttle.admit(peer, reason)
        if suppressed is not None:
            log.info(
                text + " ({suppressed} more not logged)",
                peer=peer,
                suppressed=suppressed,
            )


class ActrixSite(Site):
    """The site: capped bodies, request/idle timeouts, throttled client logs."""

    def __init__(
        self,
        root: Resource,
        clock: IReactorTime,
        limits: SiteLimits,
        throttle: LogThrottle,
    ) -> None:
        super().__init__(root, logPath=None, timeout=limits.idle_timeout, reactor=clock)
        self.limits = limits
        self.max_body = limits.max_body
        self.throttle = throttle
        self.requestFactory = LimitedRequest
        self.displayTracebacks = False

    def buildProtocol(self, addr: Any) -> ActrixChannel:  # type: ignore[override]  # a channel, not Twisted's h2 proxy
        # Our channel directly, without the HTTP/2-negotiating proxy Twisted puts
        # in front (we offer no h2 in ALPN), so no extra call per read.
        channel = ActrixChannel()
        channel.factory = self
        channel.site = self
        channel.requestFactory = self.requestFactory
        channel.timeOut = self.timeOut  # type: ignore[assignment]  # float seconds work
        # As HTTPFactory.buildProtocol does: timeouts run on the site's clock.
        channel.callLater = self.reactor.callLater  # type: ignore[method-assign, assignment]
        channel.request_timeout = self.limits.request_timeout
        channel.throttle = self.throttle
        return channel

    def log(self, request: Any) -> None:
        """Access logs are off: per-request lines would drown the useful ones."""


def build_site(
    root: Resource,
    clock: IReactorTime,
    limits: SiteLimits = SiteLimits(),
    throttle: LogThrottle | None = None,
) -> ActrixSite:
    """The daemon's site over ``root`` (see :class:`ActrixSite`)."""
    return ActrixSite(root, clock, limits, throttle or LogThrottle(clock))


__all__ = [
    "ActrixChannel",
    "ActrixSite",
    "HealthResource",
    "KleinGuard",
    "SiteLimits",
    "SiteRoot",
    "build_site",
    "http",
    "json_response",
    "parse_decimal",
    "survives_disconnect",
]
