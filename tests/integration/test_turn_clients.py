"""STUN/TURN against real clients: coturn's turnutils_* and aioice, on loopback.

The daemon runs on the global reactor (STUN+TURN only) with the test config's
static user ``alice``, REST secret ``test-rest-secret`` and the 127.0.0.1 peer
allow-list. Clients run as subprocesses so they never block the reactor. Under
``CI=true`` a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from actrix.core.config import ENABLE_STUN, ENABLE_TURN
from actrix.root import ActrixService
from actrix.stun import codec
from tests.certs import write_self_signed
from tests.daemon import make_settings, start_daemon

HERE = Path(__file__).parent
TIMEOUT = 60
_POOL = 65535 - 49152 + 1  # the default relay_port_range


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package coturn; `make tools`)"
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        raise SkipTest(message)
    return path


class _Daemon:
    def __init__(
        self,
        test: TestCase,
        enable: int = ENABLE_STUN | ENABLE_TURN,
        turn_extra: str = "",
    ) -> None:
        directory = Path(test.mktemp())
        directory.mkdir()
        cert, key = write_self_signed(directory / "tls")
        settings = make_settings(
            directory,
            enable=enable,
            overrides=(
                f'[bind.ice]\ntls_port = 0\ncert = "{cert}"\nkey = "{key}"\n'
                "[turn]\nallocation_rate_per_ip = 1000.0\n"
                "allocation_burst_per_ip = 1000\n" + turn_extra
            ),
        )
        self.root: ActrixService = start_daemon(test, settings)

    def port(self, name: str) -> int:
        return int(self.root.listener(name).bound_port)


def _sockets() -> list[str]:
    """This process's open socket descriptors (the daemon runs in it)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.append(f"{name}:{target}")
    return found


async def _run(executable: str, *args: str) -> tuple[str, int]:
    out, err, code = await getProcessOutputAndValue(
        executable, args, env=dict(os.environ), reactor=reactor
    )
    return (out + err).decode("utf-8", "replace"), code


class BindingTests(TestCase):
    timeout = TIMEOUT

    async def test_binding_over_udp(self) -> None:
        """A Twisted UDP client gets its own address back."""
        await self._binding(_Daemon(self))

    async def test_stun_only_daemon(self) -> None:
        """With bit 2 alone there is no TURN service and Binding still works."""
        daemon = _Daemon(self, enable=ENABLE_STUN)
        self.assertIsNone(daemon.root.sessions.namedServices.get("turn"))
        await self._binding(daemon)

    async def _binding(self, daemon: _Daemon) -> None:
        answer: Deferred[bytes] = Deferred()

        class Client(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                if not answer.called:
                    answer.callback(data)

        udp: Any = reactor
        port = udp.listenUDP(0, Client(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        txid = os.urandom(12)
        port.write(
            codec.encode(codec.BINDING_REQUEST, txid, [], fingerprint=True),
            ("127.0.0.1", daemon.port("ice-udp")),
        )
        answer.addTimeout(5, reactor)
        reply = codec.decode(await answer)
        self.assertEqual(
            codec.decode_xor_address(reply.attrs[codec.XOR_MAPPED_ADDRESS], txid),
            ("127.0.0.1", port.getHost().port),
        )
        self.assertTrue(reply.fingerprint)

    async def test_turnutils_stunclient(self) -> None:
        """coturn's stunclient gets its reflexive address over UDP."""
        tool = _tool("turnutils_stunclient")
        daemon = _Daemon(self)
        out, code = await _run(tool, "-p", str(daemon.port("ice-udp")), "127.0.0.1")
        self.assertEqual(code, 0, out)
        self.assertIn("UDP reflexive addr: 127.0.0.1:", out)


class UclientTests(TestCase):
    timeout = TIMEOUT

    async def _uclient(self, *args: str, turn_extra: str = "") -> _Daemon:
        tool = _tool("turnutils_uclient")
        daemon = _Daemon(self, turn_extra=turn_extra)
        port = daemon.port("ice-tcp" if "-t" in args else "ice-udp")
        out, code = await _run(
            tool, "-y", "-n", "20", "-l", "120", "-p", str(port), *args, "127.0.0.1"
        )
        self.assertEqual(code, 0, out)
        self.assertIn("Total lost packets 0 (0.000000%)", out)
        self.assertNotIn("error", out.lower())
        return daemon

    async def test_uclient_udp_static_user(self) -> None:
        """uclient relays client to client over UDP with the static user."""
        await self._uclient("-u", "alice", "-w", "alice-password")

    async def test_uclient_udp_rest(self) -> None:
        """uclient relays over UDP with REST (-W) credentials."""
        await self._uclient("-W", "test-rest-secret", "-u", "bob")

    async def test_uclient_rest_with_a_rotated_out_secret(self) -> None:
        """With two REST secrets listed, uclient -W with the older one relays."""
        daemon = await self._uclient(
            "-W",
            "test-rest-secret",
            "-u",
            "bob",
            turn_extra='static_auth_secret = ["fresh-secret", "test-rest-secret"]\n',
        )
        turn: Any = daemon.root.sessions.getServiceNamed("turn")
        self.assertGreater(turn.metrics.rest_secret_matches[1], 0)
        self.assertEqual(turn.metrics.rest_secret_matches[0], 0)

    async def test_uclient_tcp_relay(self) -> None:
        """uclient -T: RFC 6062 TCP allocations, Connect/ConnectionBind both ways.

        Afterwards every allocation, peer connection, relay port and socket
        the relaying used has come back.
        """
        tool = _tool("turnutils_uclient")
        daemon = _Daemon(self)
        turn: Any = daemon.root.sessions.getServiceNamed("turn")
        sockets_before = len(_sockets())
        out, code = await _run(
            tool,
            *("-y", "-n", "20", "-l", "120", "-t", "-T"),
            *("-u", "alice", "-w", "alice-password"),
            *("-p", str(daemon.port("ice-tcp")), "127.0.0.1"),
        )
        self.assertEqual(code, 0, out)
        self.assertIn("Total lost packets 0 (0.000000%)", out)
        events = turn.metrics.tcp_connections
        self.assertGreater(events["bound"], 0)
        # Both RFC 6062 directions: uclient's senders Connect to the other
        # side's relayed address, which the relay accepts and announces.
        self.assertGreater(events["connect_ok"], 0)
        self.assertGreater(events["accepted"], 0)
        self.assertEqual(events["bound"], events["connect_ok"] + events["accepted"])
        for _ in range(50):
            if (
                not turn.allocations
                and turn.health()["relay_ports_free"] == _POOL
                and len(_sockets()) == sockets_before
            ):
                break
            await deferLater(reactor, 0.1)
        self.assertEqual(turn.allocations, {})
        self.assertEqual(turn.health()["relay_ports_free"], _POOL)
        self.assertEqual(turn.tcp_connections, 0)
        # No socket left behind (the realm DB and thread pipes are opened on
        # first use, so only sockets are compared).
        self.assertEqual(len(_sockets()), sockets_before, _sockets())

    async def test_uclient_tcp_static_user(self) -> None:
        """uclient relays over TCP with the static user."""
        await self._uclient("-t", "-u", "alice", "-w", "alice-password")

    async def test_uclient_tcp_rest(self) -> None:
        """uclient relays over TCP with REST (-W) credentials."""
        await self._uclient("-t", "-W", "test-rest-secret", "-u", "bob")

    async def test_uclient_wrong_password_fails(self) -> None:
        """A wrong static password makes uclient fail to allocate."""
        tool = _tool("turnutils_uclient")
        daemon = _Daemon(self)
        out, code = await _run(
            tool,
            "-y",
            "-n",
            "2",
            "-p",
            str(daemon.port("ice-udp")),
            "-u",
            "alice",
            "-w",
            "wrong",
            "127.0.0.1",
        )
        self.assertNotEqual(code, 0, out)
        self.assertIn("Cannot complete Allocation", out)


class AioiceTests(TestCase):
    timeout = TIMEOUT

    async def _relay(self, kind: str, username: str, password: str) -> None:
        daemon = _Daemon(self)
        listener = {"udp": "ice-udp", "tcp": "ice-tcp", "tls": "ice-tls"}[kind]
        out, code = await _run(
            sys.executable,
            str(HERE / "aioice_turn_client.py"),
            "127.0.0.1",
            str(daemon.port(listener)),
            kind,
            username,
            password,
            "10",
        )
        self.assertEqual(code, 0, out)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["echoed"], 10)
        self.assertEqual(result["relayed"][0], "127.0.0.1")

    async def test_aioice_udp(self) -> None:
        """aioice allocates over UDP and relays to an echo peer."""
        await self._relay("udp", "alice", "alice-password")

    async def test_aioice_tcp(self) -> None:
        """aioice allocates over TCP and relays to an echo peer."""
        await self._relay("tcp", "alice", "alice-password")

    async def test_aioice_tls(self) -> None:
        """aioice allocates over TLS (turns:) and relays to an echo peer."""
        await self._relay("tls", "alice", "alice-password")
