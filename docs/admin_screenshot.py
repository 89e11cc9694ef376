"""Render docs/admin-dashboard.png: the console's dashboard over a daemon under load.

    .venv/bin/python docs/admin_screenshot.py [--seconds 120] [--out PATH]

Starts actrix in this process (Signaling, AIS, KS, STUN/TURN and the admin
listener on 127.0.0.1, SQLite in a temporary directory), creates an admin token
with the ``actrix admin-token create`` CLI, and for ``--seconds`` drives real
load: signaling clients (tests/signaling_client.py) that register and leave
along a slow wave in three realms, coturn's ``turnutils_uclient`` relaying
through TURN every few seconds, now and then a client with a wrong TURN
password (auth failures), and room peers (tests/rooms_client.py) joining and
leaving rooms. Then Debian's Chromium logs in to the console and
photographs the dashboard. Needs chromium and coturn's tools (``make tools``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402  # after the path setup
from twisted.internet.threads import deferToThread  # noqa: E402
from twisted.internet.utils import getProcessOutputAndValue  # noqa: E402

from actrix.core.config import load_config  # noqa: E402
from tests.browser import ARGS, CHROMIUM  # noqa: E402
from tests.daemon import add_realm, config_text  # noqa: E402
from tests.rooms_client import JsonPeer  # noqa: E402
from tests.signaling_client import SignalingClient  # noqa: E402

REALMS = {1: "factory", 2: "lab", 3: "field"}
ALL_SERVICES = 63  # signaling, STUN, TURN, AIS, KS, rooms
EXTRA = """
[services.rooms]
allow_anonymous = true

[services.signaling.server.rate_limit.connection]
enabled = false

[services.signaling.server.rate_limit.message]
enabled = false

[admin]
enabled = true

[bind.admin]
ip = "127.0.0.1"
port = 0
"""
# The test config's static TURN user alice, with its key and a wrong one.
TURN_KEYS = {"right": "alice-password", "wrong": "not-alices-key"}
OVERRIDE_TURN = """
[turn]
allocation_rate_per_ip = 1000.0
allocation_burst_per_ip = 1000
max_allocations_per_user = 1000
"""


def _config(directory: Path) -> Path:
    text = config_text(directory, ALL_SERVICES, EXTRA)
    # The base config's [turn] table gets two more keys (TOML forbids a second table).
    text = text.replace("[turn]\n", OVERRIDE_TURN.lstrip(), 1)
    path = directory / "actrix.toml"
    path.write_text(text)
    return path


async def _cli(reactor: Any, *args: str) -> str:
    cli = Path(sys.executable).with_name("actrix")
    out, err, code = await getProcessOutputAndValue(
        str(cli), args, env={"PATH": "/usr/bin:/bin"}, reactor=reactor
    )
    if code != 0:
        raise SystemExit(f"actrix {args[0]} failed: {err.decode()}")
    text: str = out.decode()
    return text


class Load:
    """Signaling clients following a wave, TURN relays and bad passwords."""

    def __init__(self, reactor: Any, http_port: int, turn_port: int) -> None:
        self.reactor = reactor
        self.http_port = http_port
        self.turn_port = turn_port
        self.clients: list[SignalingClient] = []
        self.peers: list[JsonPeer] = []
        self.started = reactor.seconds()
        self.tick = 0
        self.uclient = shutil.which("turnutils_uclient")

    def target(self) -> int:
        t = self.reactor.seconds() - self.started
        return int(24 + 14 * math.sin(t / 18) + t / 8)

    async def step(self) -> None:
        self.tick += 1
        want = self.target()
        while len(self.clients) < want:
            client = await SignalingClient.connect(self.reactor, self.http_port)
            count = len(self.clients)
            if count % 6 != 5:  # a few connections never register
                realm = 1 + count % len(REALMS)
                await client.register(realm, name="camera" if realm != 2 else "sensor")
            self.clients.append(client)
        while len(self.clients) > want:
            self.clients.pop(0).drop()
        if self.tick % 3 == 0:
            await self.rooms()
        if self.uclient and self.tick % 6 == 0:
            self.relay(messages=150 + 40 * (self.tick % 5), login="right")
        if self.uclient and self.tick % 11 == 0:
            self.relay(messages=5, login="wrong")

    async def rooms(self) -> None:
        """Room peers come in pairs and leave after a while (two to six rooms)."""
        if len(self.peers) >= 12 or (self.tick % 21 == 0 and self.peers):
            for peer in self.peers[:4]:
                peer.abort()
            del self.peers[:4]
            return
        room = f"standup-{len(self.peers) // 2}"
        for name in ("alice", "bob"):
            peer = await JsonPeer(self.reactor).open(self.http_port)
            await peer.request(
                type="JOIN", room_id=room, payload={"display_name": name}
            )
            self.peers.append(peer)

    def relay(self, messages: int, login: str) -> None:
        """Three uclient pairs relay ``messages`` each (``login`` picks the key)."""
        if self.uclient is None:
            return
        args = ["-y", "-m", "3", "-n", str(messages), "-l", "600", "-u", "alice"]
        args += ["-w", TURN_KEYS[login], "-p", str(self.turn_port), "127.0.0.1"]
        d = getProcessOutputAndValue(self.uclient, args, reactor=self.reactor)
        d.addErrback(lambda _: None)

    def stop(self) -> None:
        for client in self.clients:
            client.drop()
        for peer in self.peers:
            peer.abort()


def _photograph(url: str, token: str, out: Path) -> None:
    """Runs in a worker thread: log in, let the charts fill, screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(
                viewport={"width": 1360, "height": 860}, color_scheme="light"
            )
            page.goto(url)
            page.fill("#token", token)
            page.click("#login-submit")
            page.wait_for_selector("figure[data-chart=presence] canvas[data-points]")
            page.wait_for_timeout(4500)
            page.screenshot(path=str(out))
        finally:
            browser.close()


async def main(reactor: Any, seconds: float, out: Path) -> None:
    from actrix.tap import build_root_service

    with tempfile.TemporaryDirectory(prefix="actrix-shot-") as tmp:
        directory = Path(tmp)
        for realm_id, name in REALMS.items():
            add_realm(directory, realm_id, name)
        config = _config(directory)
        created = await _cli(
            reactor,
            "admin-token",
            "create",
            "--name",
            "ops",
            "--json",
            "-c",
            str(config),
        )
        token = json.loads(created)["token"]
        root = build_root_service(load_config(config), reactor)
        root.privilegedStartService()
        root.startService()
        load = Load(
            reactor,
            int(root.listener("http").bound_port),
            int(root.listener("ice-udp").bound_port),
        )
        try:
            deadline = reactor.seconds() + seconds
            while reactor.seconds() < deadline:
                await load.step()
                await task.deferLater(reactor, 1.0, lambda: None)
            url = f"http://127.0.0.1:{root.listener('admin').bound_port}/admin/"
            photo = deferToThread(_photograph, url, token, out)
            while not photo.called:  # keep the load running while Chromium looks
                await load.step()
                await task.deferLater(reactor, 1.0, lambda: None)
            await photo
        finally:
            load.stop()
            await root.stopService()
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "admin-dashboard.png"
    )
    options = parser.parse_args()
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(
            main(reactor, options.seconds, options.out)
        )
    )
