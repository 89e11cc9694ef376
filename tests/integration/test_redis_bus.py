"""RedisBus against a real redis-server: one PUBLISH per node and reactor turn."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core import bus as bus_module
from actrix.core.bus import DELIVER, BusMessage
from actrix.core.directory import DirectoryUnavailable
from actrix.core.redis_bus import RedisBus
from actrix.core.redis_client import RedisClient
from tests.redisserver import RedisServer


def message(n: int) -> BusMessage:
    return BusMessage(DELIVER, (5, n), 1, b"x" * 100, "node-a", flow="ice_candidate")


class RedisBusTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.config = RedisServer.get().config()  # one key prefix for the test

    async def bus(self, node: str, config: Any = None) -> RedisBus:
        client = RedisClient(config or self.config, reactor)
        client.startService()
        self.addCleanup(client.stopService)
        bus = RedisBus(client, node, reactor)
        bus.startService()
        self.addCleanup(bus.stopService)
        return bus

    async def test_one_turn_of_sends_is_one_publish(self) -> None:
        """Messages sent in one turn reach the node in order, as one pub/sub message."""
        a = await self.bus("node-a")
        b = await self.bus("node-b")
        heard: list[BusMessage] = []
        reads: list[int] = []
        b.listen(heard.append, lambda: reads.append(len(heard)))
        publications: list[bytes] = []
        received = b.received

        def counted(data: Any) -> None:
            publications.append(bytes(data))
            received(data)

        b.received = counted  # type: ignore[method-assign]  # count pub/sub deliveries
        await b.ready()
        sent = [message(i) for i in range(300)]
        results = await gatherResults(
            [Deferred.fromCoroutine(a.send("node-b", m)) for m in sent]
        )
        self.assertEqual(results, [True] * 300)
        for _ in range(50):
            if len(heard) == 300:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(heard, sent)
        self.assertEqual(len(publications), 1)
        self.assertEqual(reads, [300])  # after the batch, once
        self.assertEqual((a.sent, b.received_count), (300, 300))

    async def test_a_full_batch_goes_at_once(self) -> None:
        """Past MAX_BATCH_MESSAGES a batch is published and a new one begun."""
        self.patch(bus_module, "MAX_BATCH_MESSAGES", 10)
        from actrix.core import redis_bus

        self.patch(redis_bus, "MAX_BATCH_MESSAGES", 10)
        a = await self.bus("node-a")
        b = await self.bus("node-b")
        heard: list[BusMessage] = []
        b.listen(heard.append)
        await b.ready()
        sent = [message(i) for i in range(25)]
        await gatherResults([Deferred.fromCoroutine(a.send("node-b", m)) for m in sent])
        for _ in range(50):
            if len(heard) == 25:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(heard, sent)

    async def test_nobody_listening_and_redis_down(self) -> None:
        """Unheard: False for each sender; Redis down: each its own error."""
        a = await self.bus("node-a")
        self.assertFalse(await a.send("nobody", message(1)))
        self.assertEqual(a.unheard, 1)
        config = attrs.evolve(self.config, port=1)
        down = await self.bus("node-c", config)
        await deferLater(reactor, 0.5, lambda: None)
        failures = [
            Deferred.fromCoroutine(down.send("node-b", message(i))) for i in range(3)
        ]
        errors = []
        for d in failures:
            try:
                await d
            except DirectoryUnavailable as e:
                errors.append(e)
        self.assertEqual(len(errors), 3)
        self.assertEqual(len({id(e) for e in errors}), 3)
