"""LAN discovery on loopback multicast: a daemon announces, ``actrix discover`` sees it.

The daemon announces on 127.0.0.1 only (``[discovery] interfaces``), so the
test stays on this machine; the real ``actrix discover`` CLI runs as its own
process and browses there. Skipped only where the kernel refuses multicast on
loopback (no multicast route: nothing to test against). A probe datagram that
is merely lost skips outside CI but, with ``CI=true``, lets the test run (and
fail), so a CI machine cannot skip it silently.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from actrix.core.discovery import new_node_id
from tests.daemon import add_realm, http_port, make_settings, start_daemon

GROUP = "224.0.0.251"


def loopback_multicast_problem() -> str | None:
    """Why multicast on 127.0.0.1 does not work here, or None when it does."""
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            port = rx.getsockname()[1]
            rx.close()
            rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rx2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                rx2.bind(("", port))
                membership = struct.pack(
                    "4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")
                )
                rx2.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                rx2.settimeout(1.0)
                tx.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    socket.inet_aton("127.0.0.1"),
                )
                tx.sendto(b"actrix-probe", (GROUP, port))
                data, _ = rx2.recvfrom(64)
            finally:
                rx2.close()
    except TimeoutError:
        return None if os.environ.get("CI") == "true" else "multicast probe lost"
    except OSError as e:
        return f"no multicast route on loopback ({e.strerror or e})"
    return None if data == b"actrix-probe" else "multicast probe garbled"


class DiscoveryTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        problem = loopback_multicast_problem()
        if problem is not None:
            raise SkipTest(problem)
        self.instance = "actrix-test-" + new_node_id()
        directory = Path(self.mktemp())
        add_realm(directory, 101)
        self.root = start_daemon(
            self,
            make_settings(
                directory,
                enable=63,
                extra=(
                    "\n[discovery]\nmdns = true\n"
                    f'instance = "{self.instance}"\ninterfaces = ["127.0.0.1"]\n'
                ),
            ),
        )
        self.http = http_port(self.root)
        self.ice = int(self.root.listener("ice-udp").bound_port)
        self.ice_tcp = int(self.root.listener("ice-tcp").bound_port)

    @staticmethod
    def discover_args(*args: str) -> list[str]:
        return [
            "-c",
            "from actrix.cli import main; main()",
            "discover",
            "--interface",
            "127.0.0.1",
            *args,
        ]

    def discover(self, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        d: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            sys.executable,
            self.discover_args(*args),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            reactor=reactor,
        )
        return d

    def ours(self, output: bytes) -> list[dict[str, Any]]:
        found = json.loads(output)
        return [f for f in found if f["instance"] == self.instance]

    async def test_discover_lists_the_daemon_then_sees_it_withdrawn(self) -> None:
        """``actrix discover`` finds every endpoint; after stop it is withdrawn."""
        # Announcing takes ~1.7 s of probing; on a loaded box, browse again.
        found: list[dict[str, Any]] = []
        for _ in range(3):
            out, err, code = await self.discover("--timeout", "3", "--json")
            self.assertEqual(code, 0, err.decode())
            found = self.ours(out)
            if found:
                break
        (daemon,) = found
        self.assertEqual(daemon["node"], "actrix-test")
        http = f"127.0.0.1:{self.http}"
        ice = f"127.0.0.1:{self.ice}"
        endpoints = {k: sorted(v) for k, v in daemon["endpoints"].items()}
        self.assertEqual(
            endpoints,
            {
                "site": [f"http://{http}"],
                "signaling": [f"ws://{http}/signaling/ws"],
                "rooms": [f"ws://{http}/rooms/ws"],
                "stun": [f"stun:{ice}"],
                "turn": sorted(
                    [
                        f"turn:127.0.0.1:{self.ice_tcp}?transport=tcp",
                        f"turn:{ice}?transport=udp",
                    ]
                ),
            },
        )
        # A browser running across the stop hears the goodbye packets. The
        # daemon stops only once the browser has seen it (a loaded box may
        # take seconds just to start the browser's process).
        name = f"{self.instance}._actrix._tcp.local."
        watcher = _Watcher(f"added\t{name}\n".encode())
        reactor.spawnProcess(
            watcher,
            sys.executable,
            [
                sys.executable,
                *self.discover_args("--timeout", "12", "--watch", "--json"),
            ],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        seen = watcher.seen
        seen.addTimeout(10, reactor)
        await seen
        await self.root.stopService()
        code = await watcher.ended
        self.assertEqual(code, 0, watcher.err.decode())
        lines = watcher.out.decode().splitlines()
        events = [line.split("\t") for line in lines if "\t" in line]
        self.assertIn(["removed", name], events)
        listing = "\n".join(line for line in lines if "\t" not in line)
        self.assertEqual(self.ours(listing.encode()), [])


class _Watcher(ProcessProtocol):
    """Collects a process's output; ``seen`` fires when ``marker`` shows up."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.out = b""
        self.err = b""
        self.seen: Deferred[None] = Deferred()
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if not self.seen.called and self.marker in self.out:
            self.seen.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(-1 if code is None else int(code))
