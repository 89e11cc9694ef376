"""TokenSealer with its real child process, and the daemon's AIS using it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import coincurve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core import tokens
from actrix.core.credentials import InlineCrypto
from actrix.core.interfaces import Claims
from actrix.core.sealer import SealFailed, TokenSealer
from tests.daemon import add_realm, http_port, make_settings, start_daemon
from tests.signaling_client import SignalingClient

CLAIMS = Claims(101, "101@42/acme:echo", 2_000_000_000, bytes(range(32)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(check: object, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if callable(check) and check():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not reached")


class TokenSealerTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.secret = coincurve.PrivateKey()
        self.public = self.secret.public_key.format(compressed=True)

    def sealer(self, **kwargs: object) -> TokenSealer:
        sealer = TokenSealer(reactor, InlineCrypto(), **kwargs)  # type: ignore[arg-type]
        sealer.startService()
        self.addCleanup(sealer.stopService)
        return sealer

    def opens(self, token: bytes) -> Claims:
        return tokens.decrypt_token(self.secret.secret, token)

    async def test_seals_in_the_child(self) -> None:
        """The token comes from another process and opens to the claims."""
        sealer = self.sealer()
        token = await sealer.encrypt_token(self.public, CLAIMS)
        self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual((sealer.stats.in_worker, sealer.stats.fallback), (1, 0))
        pid = sealer.worker_pid
        assert pid is not None
        self.assertNotEqual(pid, os.getpid())

    async def test_bad_key_fails_that_token(self) -> None:
        sealer = self.sealer()
        with self.assertRaises(SealFailed):
            await sealer.encrypt_token(b"\x02" + b"\xff" * 32, CLAIMS)
        token = await sealer.encrypt_token(self.public, CLAIMS)
        self.assertEqual(self.opens(token), CLAIMS)

    async def test_killed_child_jobs_are_redone_and_child_restarts(self) -> None:
        """Jobs the dead child left are sealed in the daemon; a new child follows."""
        sealer = self.sealer(restart_delay=0.0)
        await sealer.encrypt_token(self.public, CLAIMS)  # the child is up
        pid = sealer.worker_pid
        assert pid is not None
        jobs: list[Deferred[bytes]] = [
            sealer.encrypt_token(self.public, CLAIMS) for _ in range(50)
        ]
        os.kill(pid, signal.SIGKILL)
        results = await gatherResults(jobs)
        for token in results:
            self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual(sealer.stats.in_worker + sealer.stats.fallback, 51)
        await until(lambda: sealer.worker_pid is None)
        token = await sealer.encrypt_token(self.public, CLAIMS)
        self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual(sealer.stats.worker_starts, 2)
        self.assertNotEqual(sealer.worker_pid, pid)

    async def test_fallback_when_not_started_or_backlogged(self) -> None:
        idle = TokenSealer(reactor, InlineCrypto())
        token = await idle.encrypt_token(self.public, CLAIMS)
        self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual((idle.stats.in_worker, idle.stats.fallback), (0, 1))
        sealer = self.sealer(max_pending=2)
        jobs = [sealer.encrypt_token(self.public, CLAIMS) for _ in range(5)]
        for token in await gatherResults(jobs):
            self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual(sealer.stats.fallback, 3)

    async def test_child_outlives_group_signals(self) -> None:
        """SIGTERM/SIGINT to the process group (systemd, Ctrl-C) do not end the
        child before the daemon closes its stdin."""
        sealer = self.sealer()
        await sealer.encrypt_token(self.public, CLAIMS)
        pid = sealer.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertTrue(alive(pid))
        token = await sealer.encrypt_token(self.public, CLAIMS)
        self.assertEqual(self.opens(token), CLAIMS)
        self.assertEqual(sealer.stats.fallback, 0)

    async def test_stop_ends_the_child(self) -> None:
        sealer = TokenSealer(reactor, InlineCrypto())
        sealer.startService()
        await sealer.encrypt_token(self.public, CLAIMS)
        pid = sealer.worker_pid
        assert pid is not None
        await sealer.stopService()
        await until(lambda: not alive(pid))


class DaemonSealingTests(TestCase):
    timeout = 30

    async def test_registration_tokens_come_from_the_child(self) -> None:
        """The daemon's AIS seals in its child, and the token validates on relays."""
        directory = Path(self.mktemp())
        add_realm(directory, 101)
        root = start_daemon(self, make_settings(directory, enable=25))
        client = await SignalingClient.connect(reactor, http_port(root))
        self.addCleanup(client.drop)
        response = await client.register(101, name="echo")
        self.assertTrue(response.HasField("success"), str(response))
        sealer = root.background.getServiceNamed("token-sealer")
        self.assertIsInstance(sealer, TokenSealer)
        self.assertGreaterEqual(sealer.stats.in_worker, 1)
        pong = await client.ping()
        self.assertTrue(pong.HasField("pong"), str(pong))
