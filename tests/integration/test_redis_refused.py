"""A connection Redis refused (wrong password) heals without a restart.

txredisapi gives up for good after a refused AUTH; the client starts a fresh
connection every ``REFUSED_RETRY`` seconds (patched short here), reading
``password_file`` again, and the bus's subscriber connection follows. Run
against a real ``redis-server`` with ``requirepass``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core import redis_client
from actrix.core.bus import KICK, BusMessage
from actrix.core.directory import DirectoryUnavailable
from actrix.core.redis_bus import RedisBus
from actrix.core.redis_client import RedisClient
from actrix.core.settings import Secret
from tests.redisserver import RedisServer


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class RefusedPasswordTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.patch(redis_client, "REFUSED_RETRY", 0.5)
        self.server = RedisServer.private(password="right-password")
        self.addCleanup(self.server.stop)

    def client(self, **overrides: Any) -> RedisClient:
        config = attrs.evolve(self.server.config(), **overrides)
        client = RedisClient(config, reactor)
        client.startService()
        self.addCleanup(client.stopService)
        return client

    async def until_up(self, client: RedisClient, seconds: float = 10.0) -> None:
        for _ in range(int(seconds / 0.1)):
            if client.up:
                return
            await sleep(0.1)
        self.fail("the client never connected")

    async def test_fixed_password_file_is_read_again(self) -> None:
        """Wrong in the file: refused; fixed in the file: connected, no restart."""
        path = Path(self.mktemp())
        path.write_text("wrong-password\n")
        client = self.client(password=Secret("wrong-password"), password_file=path)
        bus = RedisBus(client, "node-a", reactor)
        heard: list[BusMessage] = []
        bus.listen(heard.append)
        bus.startService()
        self.addCleanup(bus.stopService)
        await sleep(1.5)
        self.assertFalse(client.up)
        with self.assertRaises(DirectoryUnavailable):
            await client.command("PING")
        path.write_text("right-password\n")
        await self.until_up(client)
        self.assertEqual(await client.command("PING"), b"PONG")
        # The bus's subscriber connection was renewed with it.
        ready: Deferred[None] = Deferred.fromCoroutine(bus.ready())
        ready.addTimeout(10, reactor)
        await ready
        message = BusMessage(KICK, (1, 2), 3, origin="node-b")
        self.assertTrue(await bus.send("node-a", message))
        for _ in range(50):
            if heard:
                break
            await sleep(0.1)
        self.assertEqual(heard, [message])

    async def test_password_fixed_on_the_server(self) -> None:
        """The server's password changed to the one configured: connected."""
        client = self.client(password=Secret("new-password"))
        await sleep(1.0)
        self.assertFalse(client.up)
        admin = self.client()
        await self.until_up(admin)
        await admin.command("CONFIG", "SET", "requirepass", "new-password")
        await self.until_up(client)
        self.assertEqual(await client.command("PING"), b"PONG")
