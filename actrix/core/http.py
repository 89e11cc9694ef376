"""The daemon's one HTTP(S) site: ``/health`` plus mount points for the services.

Services mount their resources with :meth:`SiteRoot.mount` (``/ks``, ``/ais``,
``/signaling``, ``/metrics``). Request bodies are capped (``MAX_BODY``): a larger
``Content-Length`` gets 413 before the body is read, and a chunked body that
grows past the cap is cut off the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import actrix

MAX_BODY: Final = 1024 * 1024


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


def json_response(request: Request, status: int, body: object) -> bytes:
    """Set status and JSON content type; return the encoded body."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, separators=(",", ":")).encode()


class HealthResource(Resource):
    """``GET /health``: status, version, enabled services, uptime."""

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        name: str,
        services: tuple[str, ...],
        checks: dict[str, Callable[[], bool]] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._started = clock.seconds()
        self._name = name
        self._services = services
        self._checks = checks or {}

    def render_GET(self, request: Request) -> bytes:
        failed = sorted(k for k, check in self._checks.items() if not check())
        body = {
            "status": "degraded" if failed else "ok",
            "version": actrix.__version__,
            "name": self._name,
            "services": list(self._services),
            "uptime_seconds": int(self._clock.seconds() - self._started),
        }
        if failed:
            body["failed"] = failed
        return json_response(request, 200, body)


class SiteRoot(Resource):
    """The resource tree root; 404 for anything not mounted."""

    def mount(self, name: str, resource: Resource) -> None:
        """Serve ``resource`` under ``/<name>``."""
        self.putChild(name.encode("ascii"), resource)

    def render_GET(self, request: Request) -> bytes:
        return json_response(request, 404, {"error": "Not found", "code": 404})


def build_site(root: Resource, max_body: int = MAX_BODY) -> Site:
    """A Site with capped request bodies and no per-request access log noise."""
    site = Site(root, logPath=None)
    site.requestFactory = LimitedRequest
    site.max_body = max_body  # type: ignore[attr-defined]  # read by LimitedRequest
    site.displayTracebacks = False
    site.log = _no_access_log  # type: ignore[method-assign]  # silence access logs
    return site


def _no_access_log(request: Any) -> None:
    """Access logs are off: per-request lines would drown the useful ones."""


__all__ = [
    "HealthResource",
    "SiteRoot",
    "build_site",
    "http",
    "json_response",
    "parse_decimal",
]
