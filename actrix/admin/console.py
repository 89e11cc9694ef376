"""``/admin``: the console's static files and, under ``/admin/api``, the API.

The console is plain files (``actrix/admin/static``: index.html, ES modules,
css) served as they are: ``/admin/`` is index.html, no directory is ever
listed, types come from a fixed table (``.js`` is ``text/javascript`` so
browsers run modules whatever the system's mime.types says), and every answer
carries ``Content-Security-Policy: default-src 'self'``, ``X-Frame-Options:
DENY`` and ``nosniff``. Files are revalidated on each load (``no-cache`` with
Last-Modified), so a new release shows at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from twisted.python.filepath import FilePath
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request
from twisted.web.static import File
from twisted.web.util import Redirect

STATIC_DIR: Final = Path(__file__).parent / "static"

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

STATIC_HEADERS: Final = (
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)


class ConsoleFiles(File):
    """A static directory with the console's headers and no listings."""

    contentTypes = CONTENT_TYPES  # twisted.web.static's class attribute
    indexNames = ["index.html"]  # noqa: RUF012 (twisted.web.static's class attribute)

    def directoryListing(self) -> Resource:
        return NoResource("No such file.")

    def render(self, request: Request) -> Any:
        for name, value in STATIC_HEADERS:
            request.setHeader(name, value)
        return super().render(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path.startswith(b"."):  # no dotfiles (editor swap files, .git)
            return NoResource("No such file.")
        child: Resource = super().getChild(path, request)
        return child


class AdminRoot(Resource):
    """``/admin``: redirect to ``/admin/``, files, and ``api`` for the API."""

    def __init__(self, api: Resource, directory: Path = STATIC_DIR) -> None:
        super().__init__()
        self.putChild(b"api", api)
        self._files: Resource
        if directory.is_dir():
            self._files = ConsoleFiles(FilePath(str(directory)).path)
        else:
            self._files = NoResource(
                "The console files are not installed (actrix/admin/static)."
            )

    def getChild(self, path: bytes, request: Request) -> Resource:
        # Everything but api/ is a file of the console ("" is its index).
        assert request.prepath is not None  # noqa: S101 (set while traversing)
        assert request.postpath is not None  # noqa: S101
        request.prepath.pop()
        request.postpath.insert(0, path)
        return self._files

    def render(self, request: Request) -> bytes:
        # /admin without the slash: the console's relative URLs need it.
        redirect: bytes = Redirect(b"/admin/").render(request)
        return redirect


class ListenerRoot(Resource):
    """The root of the ``bind.admin`` listener: ``/`` redirects to ``/admin/``."""

    def __init__(self, admin: AdminRoot) -> None:
        super().__init__()
        self.putChild(b"admin", admin)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        child: Resource = super().getChild(path, request)
        return child

    def render(self, request: Request) -> bytes:
        redirect: bytes = Redirect(b"/admin/").render(request)
        return redirect
