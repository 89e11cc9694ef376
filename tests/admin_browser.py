"""The admin console in Chromium against a real daemon: the harness of the flows.

:class:`AdminBrowserCase` starts a daemon on loopback (signaling, STUN/TURN,
AIS, KS, rooms and the ``[bind.admin]`` listener) whose config file lives in
the test's directory, makes an operator token with the ``actrix admin-token
create`` CLI (a subprocess, as an operator runs it), and runs a *flow* in a
worker thread: Playwright's sync API logs in (after one wrong token, whose
reason must show in words) and hands the page to the flow. The flow asks the
reactor side (:class:`Operator`: real signaling, room and TURN clients, the
API with the bearer token) for what it needs through ``blockingCallFromThread``.
The page runs under the daemon's Content-Security-Policy; a violation or a
script error fails the test. On failure the page's screenshot is saved under
the test's temporary directory and its path is in the failure message.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from actrix.core.actrid import actr_id_repr
from actrix.core.config import load_config
from actrix.stun import codec
from tests.browser import ARGS, CHROMIUM, require_browser
from tests.daemon import add_realm, config_text, http_client, start_daemon, wait_healthy
from tests.integration.test_turn_daemon import TurnUdpClient
from tests.rooms_client import JsonPeer
from tests.signaling_client import SignalingClient

REALM = 301
DOOMED_REALM = 302
ALL_SERVICES = 63
WAIT_MS = 15000
EXTRA = """
[services.rooms]
allow_anonymous = true

[admin]
enabled = true

[bind.admin]
ip = "127.0.0.1"
port = 0
"""

Flow = Callable[[Any, "Operator", dict[str, Any]], None]


class BrowserFailure(AssertionError):
    """A browser step failed; the message names the screenshot."""


async def create_admin_token(
    config: Path, name: str = "ops", read_only: bool = False
) -> str:
    """``actrix admin-token create --name NAME [--read-only] --json``."""
    cli = Path(sys.executable).with_name("actrix")
    args = ["admin-token", "create", "--name", name, "--json", "-c", str(config)]
    out, err, code = await getProcessOutputAndValue(
        str(cli),
        [*args, "--read-only"] if read_only else args,
        env=dict(os.environ),
        reactor=reactor,
    )
    if code != 0:
        raise AssertionError(f"admin-token create failed ({code}): {err!r}")
    token: str = json.loads(out)["token"]
    return token


class Operator:
    """The reactor side of a flow: real clients and the API, on request."""

    def __init__(self, test: TestCase, root: Any, token: str) -> None:
        self.test = test
        self.http_port = int(root.listener("http").bound_port)
        self.ice_port = int(root.listener("ice-udp").bound_port)
        self.admin_port = int(root.listener("admin").bound_port)
        self.token = token
        self.clients: dict[str, SignalingClient] = {}
        self.peers: dict[str, JsonPeer] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/admin/"

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """From the browser thread: run a coroutine method on the reactor."""
        threads: Any = reactor  # the global reactor provides IReactorFromThreads
        return blockingCallFromThread(
            threads, lambda: Deferred.fromCoroutine(method(*args))
        )

    async def _connect(self) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.http_port)
        self.test.addCleanup(client.drop)
        return client

    async def register(self, realm_id: int) -> str:
        """Register a camera in ``realm_id``; returns its actor id text."""
        client = await self._connect()
        response = await client.register(realm_id, name="camera")
        if not response.HasField("success"):
            raise AssertionError(f"register failed: {response}")
        assert client.actr_id is not None
        actor_id = actr_id_repr(client.actr_id)
        self.clients[actor_id] = client
        return actor_id

    async def register_refused(self, realm_id: int) -> bool:
        """Whether a new registration in ``realm_id`` is refused."""
        client = await self._connect()
        response = await client.register(realm_id, name="camera")
        return not response.HasField("success")

    async def closed(self, actor_id: str) -> int | None:
        """Wait (5 s at most) until the actor's socket is closed; its close code."""
        try:
            return await self.clients[actor_id].wait_closed()
        except (defer.TimeoutError, defer.CancelledError):
            raise AssertionError(f"{actor_id}: its WebSocket is still open") from None

    async def join_room(self, room: str, name: str) -> str:
        """A JSON room peer joins ``room``; returns its peer id."""
        peer = await JsonPeer(reactor).open(self.http_port)
        self.test.addCleanup(peer.abort)
        ack = await peer.request(
            type="JOIN", room_id=room, payload={"display_name": name}
        )
        if ack.get("type") != "ACK":
            raise AssertionError(f"join failed: {ack}")
        self.peers[peer.peer_id] = peer
        return peer.peer_id

    async def peer_closed(self, peer_id: str) -> int | None:
        try:
            return await self.peers[peer_id].wait_closed()
        except (defer.TimeoutError, defer.CancelledError):
            raise AssertionError(f"room peer {peer_id}: still connected") from None

    async def allocate(self) -> str:
        """A TURN allocation for the static user alice; returns its client address."""
        client = TurnUdpClient(("127.0.0.1", self.ice_port), "alice", "alice-password")
        udp: Any = reactor
        port = udp.listenUDP(0, client, interface="127.0.0.1")
        self.test.addCleanup(port.stopListening)
        answer = await client.allocate()
        if codec.ERROR_CODE in answer.attrs:
            raise AssertionError(f"allocate failed: {answer.attrs[codec.ERROR_CODE]!r}")
        return f"127.0.0.1:{port.getHost().port}"

    async def rename_realm(self, realm_id: int, name: str) -> None:
        """Someone else renames a realm (curl with the bearer token)."""
        realm = await self.api("GET", f"realms/{realm_id}")
        await self.api(
            "PATCH", f"realms/{realm_id}", {"version": realm["version"], "name": name}
        )

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """One API call with the bearer token (no cookie, no CSRF)."""
        client = http_client(self.test)
        response = await client.request(
            method,
            f"http://127.0.0.1:{self.admin_port}/admin/api/v1/{path}",
            headers=Headers({"Authorization": [f"Bearer {self.token}"]}),
            json=body,
        )
        text = await treq.text_content(response)
        return json.loads(text) if text else None


def run_flow(operator: Operator, flow: Flow, shots: Path) -> dict[str, Any]:
    """Runs in a worker thread: log in, then ``flow(page, operator, result)``."""
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {"problems": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: result["problems"].append(f"script: {e}"))
        page.on(
            "console",
            lambda m: (
                result["problems"].append(f"console: {m.text}")
                if "Content Security Policy" in m.text
                else None
            ),
        )
        try:
            _log_in(page, operator, result)
            flow(page, operator, result)
        except BaseException as e:
            shots.mkdir(parents=True, exist_ok=True)
            shot = (shots / f"{flow.__name__.strip('_')}.png").resolve()
            page.screenshot(path=str(shot), full_page=True)
            sys.stderr.write(f"\nadmin console screenshot: {shot}\n")
            raise BrowserFailure(f"{e}\nscreenshot: {shot}") from e
        finally:
            browser.close()
    return result


def _log_in(page: Any, operator: Operator, result: dict[str, Any]) -> None:
    """A wrong token first (its reason must show in words), then the right one."""
    response = page.goto(operator.url)
    result["csp"] = response.headers.get("content-security-policy")
    page.fill("#token", "not-a-token")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    result["login_error"] = page.inner_text("#login-error")
    page.fill("#token", operator.token)
    page.click("#login-submit")
    page.wait_for_selector("[data-page=dashboard] figure[data-chart=presence]")
    result["who"] = page.inner_text("#who-name")


class AdminBrowserCase(TestCase):
    timeout = 120

    async def operate(self, flow: Flow, read_only: bool = False) -> dict[str, Any]:
        """A daemon with two realms and an admin token; ``flow`` runs in Chromium."""
        require_browser(self)
        directory = Path(self.mktemp())
        add_realm(directory, REALM, "browser")
        add_realm(directory, DOOMED_REALM, "doomed")
        config = directory / "actrix.toml"
        config.write_text(config_text(directory, ALL_SERVICES, EXTRA))
        name = "viewer" if read_only else "ops"
        token = await create_admin_token(config, name, read_only)
        root = start_daemon(self, load_config(config))
        await wait_healthy(self, root)
        operator = Operator(self, root, token)
        shots = directory / "screenshots"
        result: dict[str, Any] = await deferToThread(run_flow, operator, flow, shots)
        self.assertEqual(result["problems"], [])
        self.assertIn("default-src 'self'", result["csp"] or "")
        self.assertTrue(result["login_error"].strip())
        self.assertEqual(result["who"], name)
        return result
