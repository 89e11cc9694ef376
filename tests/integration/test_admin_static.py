"""The console's static files served from a real loopback listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import treq
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from actrix.admin.console import AdminRoot, ListenerRoot
from tests.daemon import http_client


class StaticTests(TestCase):
    """Served from a real loopback listener (twisted.web.static streams files)."""

    def setUp(self) -> None:
        from twisted.internet import reactor
        from twisted.web.server import Site

        self.dir = Path(self.mktemp())
        (self.dir / "js").mkdir(parents=True)
        (self.dir / "index.html").write_text("<!doctype html><title>c</title>")
        (self.dir / "js" / "app.js").write_text("export const a = 1;")
        (self.dir / "style.css").write_text("body{}")
        (self.dir / ".secret").write_text("no")
        site: Any = Site(ListenerRoot(AdminRoot(Resource(), self.dir)))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        self.base = f"http://127.0.0.1:{address.port}"
        self.client = http_client(self)

    async def get(self, path: str) -> tuple[int, bytes, Any]:
        response = await self.client.get(self.base + path, allow_redirects=False)
        return response.code, await treq.content(response), response.headers

    async def test_index_and_types(self) -> None:
        """/admin/ is index.html; modules and css carry their content types."""
        code, body, headers = await self.get("/admin/")
        self.assertEqual(code, 200)
        self.assertIn(b"doctype", body)
        self.assertEqual(
            headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"]
        )
        self.assertEqual(
            headers.getRawHeaders("content-security-policy")[0].split(";")[0],
            "default-src 'self'",
        )
        self.assertEqual(headers.getRawHeaders("x-frame-options"), ["DENY"])
        code, _, headers = await self.get("/admin/js/app.js")
        self.assertEqual(
            (code, headers.getRawHeaders("content-type")),
            (200, ["text/javascript; charset=utf-8"]),
        )
        code, _, headers = await self.get("/admin/style.css")
        self.assertEqual(
            headers.getRawHeaders("content-type"), ["text/css; charset=utf-8"]
        )
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-cache"])

    async def test_no_listing_no_dotfiles_no_escape(self) -> None:
        """Directories are not listed; dotfiles and paths outside are 404."""
        for path in (
            "/admin/js/",
            "/admin/.secret",
            "/admin/../setup.cfg",
            "/admin/js/%2e%2e/%2e%2e/setup.cfg",
            "/admin/missing.js",
        ):
            code, body, _ = await self.get(path)
            self.assertEqual(code, 404, path)
            self.assertNotIn(b"app.js", body)

    async def test_redirects(self) -> None:
        """/ and /admin redirect to /admin/."""
        for path in ("/", "/admin"):
            code, _, headers = await self.get(path)
            self.assertEqual(code, 302, path)
            self.assertEqual(headers.getRawHeaders("location"), ["/admin/"])
