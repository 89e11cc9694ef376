"""The admin console in a real browser against a real daemon on loopback.

An operator token is made with the ``actrix admin-token create`` CLI (a
subprocess on the daemon's config file). Debian's Chromium, driven by
Playwright in a worker thread, logs in (after one wrong token, whose error it
must show in words), watches the dashboard chart draw, finds an actor that a
real signaling client registered on the actors page, revokes it through the
confirmation dialog and sees it gone while the client's WebSocket closes,
suspends a realm (after which registering in it is refused), reads both
actions in the audit log and logs out. The page runs under the daemon's
``Content-Security-Policy``; any violation or script error fails the test. On
failure a screenshot is saved under the test's temporary directory and its
path is in the failure message.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from actrix.core.actrid import actr_id_repr
from actrix.core.config import load_config
from tests.browser import ARGS, CHROMIUM, require_browser
from tests.daemon import add_realm, config_text, start_daemon, wait_healthy
from tests.signaling_client import SignalingClient

REALM = 301
DOOMED_REALM = 302
SIGNALING_AIS_KS = 25
WAIT_MS = 15000
ADMIN = """
[admin]
enabled = true

[bind.admin]
ip = "127.0.0.1"
port = 0
"""

# Pixels of the series' colours (--c0, --c1: the lines may overlap) on a chart.
_LINE_PIXELS = """(figure) => {
  const canvas = figure.querySelector("canvas");
  const css = getComputedStyle(figure);
  const colours = ["--c0", "--c1"].map((name) => {
    const hex = css.getPropertyValue(name).trim();
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  });
  const ctx = canvas.getContext("2d");
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = colours.some((c) => Math.abs(data[i] - c[0])
      + Math.abs(data[i + 1] - c[1]) + Math.abs(data[i + 2] - c[2]) < 60);
    if (data[i + 3] > 200 && near) count += 1;
  }
  return count;
}"""


class BrowserFailure(AssertionError):
    """A browser step failed; the message names the screenshot."""


async def create_admin_token(config: Path) -> str:
    """``actrix admin-token create --name ops --json`` as the operator runs it."""
    cli = Path(sys.executable).with_name("actrix")
    out, err, code = await getProcessOutputAndValue(
        str(cli),
        ["admin-token", "create", "--name", "ops", "--json", "-c", str(config)],
        env=dict(os.environ),
        reactor=reactor,
    )
    if code != 0:
        raise AssertionError(f"admin-token create failed ({code}): {err!r}")
    token: str = json.loads(out)["token"]
    return token


class Actors:
    """The reactor side: real signaling clients the browser thread asks for."""

    def __init__(self, test: TestCase, port: int) -> None:
        self.test = test
        self.port = port
        self.clients: dict[str, SignalingClient] = {}

    async def _connect(self) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.port)
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

    def call(self, method: Any, *args: Any) -> Any:
        """From the browser thread: run a coroutine method on the reactor."""
        threads: Any = reactor  # the global reactor provides IReactorFromThreads
        return blockingCallFromThread(
            threads, lambda: Deferred.fromCoroutine(method(*args))
        )


def _operate(
    url: str, token: str, flow: Any, actors: Actors, shots: Path
) -> dict[str, Any]:
    """Runs in a worker thread: log in, then ``flow(page, actors, result)``."""
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
            _log_in(page, url, token, result)
            flow(page, actors, result)
        except BaseException as e:
            shots.mkdir(parents=True, exist_ok=True)
            shot = (shots / f"{flow.__name__.strip('_')}.png").resolve()
            page.screenshot(path=str(shot), full_page=True)
            sys.stderr.write(f"\nadmin console screenshot: {shot}\n")
            raise BrowserFailure(f"{e}\nscreenshot: {shot}") from e
        finally:
            browser.close()
    return result


def _log_in(page: Any, url: str, token: str, result: dict[str, Any]) -> None:
    """A wrong token first (its reason must show in words), then the right one."""
    response = page.goto(url)
    result["csp"] = response.headers.get("content-security-policy")
    page.fill("#token", "not-a-token")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    result["login_error"] = page.inner_text("#login-error")
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_selector("[data-page=dashboard] figure[data-chart=presence]")
    result["who"] = page.inner_text("#who-name")


def _revoke_flow(page: Any, actors: Actors, result: dict[str, Any]) -> None:
    """A client registers, the chart draws it, the actor is found and revoked."""
    actor_id = actors.call(actors.register, REALM)
    result["actor_id"] = actor_id
    page.wait_for_function(
        "() => Number(document.querySelector('[data-metric=connections]')"
        ".textContent) >= 1"
    )
    chart = page.wait_for_selector("figure[data-chart=presence]")
    page.wait_for_function(
        "(f) => Number(f.querySelector('canvas').dataset.points) >= 12", arg=chart
    )
    result["line_pixels"] = page.evaluate(_LINE_PIXELS, chart)

    # Filters set through the form, as an operator would.
    page.click("#nav a[data-route=actors]")
    page.wait_for_selector(
        f"#list-actors-realm_id option[value='{REALM}']", state="attached"
    )
    page.select_option("#list-actors-realm_id", str(REALM))
    page.select_option("#list-actors-status", "online")
    row = page.locator(f'#list-actors-table tr[data-key="{actor_id}"]')
    row.wait_for()
    result["actor_row"] = row.inner_text()
    row.get_by_role("button", name=f"Revoke {actor_id}").click()
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    result["revoke_dialog"] = dialog.inner_text()
    page.fill("#f-reason", "browser test")
    page.click("#dialog-ok")
    row.wait_for(state="detached", timeout=5000)
    result["revoke_notice"] = page.locator(".notice.success").last.inner_text()
    result["close_code"] = actors.call(actors.closed, actor_id)
    page.click("#nav a[data-route=audit]")
    page.locator("#list-audit-table td", has_text="actor.revoke").first.wait_for()
    result["audit"] = page.inner_text("#list-audit-table tbody")


def _suspend_flow(page: Any, actors: Actors, result: dict[str, Any]) -> None:
    """A realm is suspended after confirmation; then the operator logs out."""
    actor_id = actors.call(actors.register, DOOMED_REALM)
    page.click("#nav a[data-route=realms]")
    realm_row = page.locator(f'#list-realms-table tr[data-key="{DOOMED_REALM}"]')
    realm_row.get_by_role("button", name="Suspend doomed").click()
    result["suspend_dialog"] = page.locator("dialog[open]").inner_text()
    page.click("#dialog-ok")
    realm_row.locator(".badge", has_text="Suspended").wait_for()
    result["close_code"] = actors.call(actors.closed, actor_id)
    result["suspended_refused"] = actors.call(actors.register_refused, DOOMED_REALM)
    page.click("#nav a[data-route=audit]")
    page.locator("#list-audit-table td", has_text="realm.suspend").first.wait_for()
    result["audit"] = page.inner_text("#list-audit-table tbody")
    page.click("#logout")
    page.wait_for_selector("#token")
    page.goto(page.url.split("#")[0] + "#/actors")
    page.wait_for_selector("#token")
    result["after_logout"] = page.url


class AdminConsoleBrowserTests(TestCase):
    timeout = 120

    async def operate(self, flow: Any) -> dict[str, Any]:
        """A daemon with two realms and an admin token; ``flow`` runs in Chromium."""
        require_browser(self)
        directory = Path(self.mktemp())
        add_realm(directory, REALM, "browser")
        add_realm(directory, DOOMED_REALM, "doomed")
        config = directory / "actrix.toml"
        config.write_text(config_text(directory, SIGNALING_AIS_KS, ADMIN))
        token = await create_admin_token(config)
        root = start_daemon(self, load_config(config))
        await wait_healthy(self, root)
        actors = Actors(self, int(root.listener("http").bound_port))
        url = f"http://127.0.0.1:{root.listener('admin').bound_port}/admin/"
        shots = directory / "screenshots"
        result: dict[str, Any] = await deferToThread(
            _operate, url, token, flow, actors, shots
        )
        self.assertEqual(result["problems"], [])
        self.assertIn("default-src 'self'", result["csp"] or "")
        self.assertTrue(result["login_error"].strip())
        self.assertEqual(result["who"], "ops")
        return result

    async def test_revoke_an_actor_seen_on_the_actors_page(self) -> None:
        """The chart draws a live client; revoking it closes its socket."""
        result = await self.operate(_revoke_flow)
        self.assertGreater(result["line_pixels"], 20)
        self.assertIn(result["actor_id"], result["actor_row"])
        self.assertIn(result["actor_id"], result["revoke_dialog"])
        self.assertIn("1 socket(s) closed", result["revoke_notice"])
        self.assertIsNotNone(result["close_code"])
        self.assertIn("actor.revoke", result["audit"])

    async def test_suspend_a_realm_then_log_out(self) -> None:
        """Suspending a realm disconnects its actor and refuses new ones."""
        result = await self.operate(_suspend_flow)
        self.assertIn("doomed", result["suspend_dialog"])
        self.assertIsNotNone(result["close_code"])
        self.assertTrue(result["suspended_refused"])
        self.assertIn("realm.suspend", result["audit"])
        self.assertTrue(result["after_logout"].endswith("#/login"))
