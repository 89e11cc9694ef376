"""The demo page in a real browser: two Chromium pages chat over a TURN relay.

Debian's ``chromium`` is driven by Playwright's sync API in a worker thread
(``deferToThread``), so the daemon keeps serving on the reactor meanwhile. The
peer connections are relay-only, so the data channel works only if actrix's own
TURN server (started here on loopback) relays it. Under ``CI=true`` a missing
browser fails the test instead of skipping it. On failure each page's
screenshot is saved under the test's temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.browser import ARGS, CHROMIUM, require_browser
from tests.daemon import http_port, make_settings, start_daemon

WAIT_MS = 20000

OVERRIDES = """
[bind.ice]
domain_name = "127.0.0.1"

[turn]
relay_port_range = "40000-40999"
peer_allow = ["127.0.0.1/32"]
"""
ROOMS = """
[services.rooms]
allow_anonymous = true
"""

# The local candidate of each data channel's selected pair (relay expected).
_CANDIDATE_TYPES = """async () => {
  const types = [];
  for (const peer of window.actrixDemo.peers.values()) {
    const stats = await peer.pc.getStats();
    for (const s of stats.values()) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) {
        types.push(stats.get(s.localCandidateId).candidateType);
      }
    }
  }
  return types;
}"""


def _chat(url: str, shots: Path) -> dict[str, Any]:
    """Runs in a worker thread: two pages join, open channels, chat both ways."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pages: list[Any] = []
        try:
            for name in ("alice", "bob"):
                page = browser.new_context().new_page()
                pages.append(page)
                page.goto(url)
                page.fill("#room", "browser-test")
                page.fill("#name", name)
                page.click("#join")
                page.wait_for_selector("#room-view:not(.hidden)", timeout=WAIT_MS)
            alice, bob = pages
            for page in pages:
                page.wait_for_selector("tr[data-state=open]", timeout=WAIT_MS)
            alice.fill("#chat-input", "hello from alice")
            alice.click("#send")
            bob.fill("#chat-input", "hello from bob")
            bob.click("#send")
            for page, text in ((bob, "hello from alice"), (alice, "hello from bob")):
                page.wait_for_function(
                    "(t) => [...window.actrixDemo.peers.values()]"
                    ".some((p) => p.received.includes(t))",
                    arg=text,
                    timeout=WAIT_MS,
                )
            return {
                "alice_log": alice.inner_text("#log"),
                "bob_log": bob.inner_text("#log"),
                "alice_candidates": alice.evaluate(_CANDIDATE_TYPES),
                "bob_candidates": bob.evaluate(_CANDIDATE_TYPES),
                "bob_peer": bob.inner_text("#peers tbody"),
            }
        except BaseException:
            shots.mkdir(parents=True, exist_ok=True)
            for i, page in enumerate(pages):
                page.screenshot(path=str(shots / f"page-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()


class DemoPageBrowserTests(TestCase):
    timeout = 90

    async def test_two_pages_chat_through_the_relay(self) -> None:
        """Two demo pages open a relay-only data channel via actrix TURN and chat."""
        require_browser(self)
        directory = Path(self.mktemp())
        root = start_daemon(
            self,
            make_settings(directory, enable=63, extra=ROOMS, overrides=OVERRIDES),
        )
        url = f"http://127.0.0.1:{http_port(root)}/rooms/demo/"
        shots = directory / "screenshots"
        result = await deferToThread(_chat, url, shots)
        self.assertIn("hello from alice", result["bob_log"])
        self.assertIn("hello from bob", result["alice_log"])
        self.assertEqual(result["alice_candidates"], ["relay"])
        self.assertEqual(result["bob_candidates"], ["relay"])
        self.assertIn("alice", result["bob_peer"])
