"""RedisDirectory against the suite's real redis-server (no fake Redis)."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from actrix.core.actrid import new_actr_id, type_key
from actrix.core.directory import ActorEntry, Heartbeat
from actrix.core.redis_client import RedisClient
from actrix.core.redis_directory import LOCATION_TTL, RedisDirectory, new_node_id
from actrix.core.settings import RedisConfig
from actrix.proto import actr_pb2
from tests.redisserver import RedisServer

REALM = 5


def entry(serial: int, name: str = "echo", **kwargs: Any) -> ActorEntry:
    actr_id = new_actr_id(REALM, serial, "acme", name)
    return ActorEntry(
        actr_id=actr_id,
        type_key=type_key(actr_id.type),
        service_name=f"acme/{name}",
        service_spec=None,
        ws_address=None,
        last_heartbeat=float(reactor.seconds()),
        **kwargs,
    )


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class RedisDirectoryTests(TestCase):
    """Entries, TTLs, indexes and subscriptions as Redis holds them."""

    timeout = 20

    def setUp(self) -> None:
        self.config = RedisServer.get().config()

    def directory(
        self, timeout: float = 30.0, config: RedisConfig | None = None
    ) -> tuple[RedisDirectory, RedisClient]:
        client = RedisClient(config or self.config)
        client.startService()
        self.addCleanup(client.stopService)
        node = new_node_id()
        prefix = (config or self.config).key_prefix
        return RedisDirectory(client, reactor, node, timeout, prefix), client

    async def test_entry_names_node_and_session_and_has_the_ttl(self) -> None:
        """A registered actor's hash names its node and session; TTL = timeout."""
        directory, client = self.directory(timeout=30)
        await directory.register(entry(1, session=42))
        found = await directory.lookup((REALM, 1))
        assert found is not None
        self.assertEqual((found.node, found.session), (directory.node_id, 42))
        self.assertEqual(directory.cached((REALM, 1)), found)
        ttl = await client.command("PTTL", f"{self.config.key_prefix}a:{REALM}:1")
        self.assertTrue(25_000 < ttl <= 30_000, ttl)

    async def test_heartbeat_refreshes_the_ttl_and_the_entry(self) -> None:
        """A heartbeat rewrites the load figures and restarts the TTL."""
        directory, client = self.directory(timeout=30)
        await directory.register(entry(1))
        key = f"{self.config.key_prefix}a:{REALM}:1"
        await client.command("PEXPIRE", key, 1000)
        beat = Heartbeat(7, 0.5, 2.0, ("c1",))
        now = float(reactor.seconds())
        updated = await directory.heartbeat((REALM, 1), beat, now)
        assert updated is not None
        self.assertEqual(
            (updated.availability, updated.sticky_client_ids, updated.last_heartbeat),
            (7, ("c1",), now),
        )
        self.assertGreater(await client.command("PTTL", key), 25_000)
        self.assertIsNone(await directory.heartbeat((REALM, 99), beat, now))

    async def test_silent_actor_expires_and_leaves_the_indexes(self) -> None:
        """Without heartbeats the entry expires; the next read drops its index rows."""
        directory, client = self.directory(timeout=0.2)
        other, _ = self.directory(timeout=30)
        await directory.register(entry(1))
        await other.register(entry(2))
        self.assertEqual(len(await other.in_realm(REALM)), 2)
        await sleep(0.4)
        self.assertIsNone(await other.lookup((REALM, 1)))
        self.assertEqual([e.key for e in await other.in_realm(REALM)], [(REALM, 2)])
        self.assertEqual(
            [e.key for e in await other.of_type(REALM, "acme", "echo")], [(REALM, 2)]
        )
        members = await client.command(
            "ZRANGE", f"{self.config.key_prefix}r:{REALM}", 0, -1
        )
        self.assertEqual(members, [b"2"])

    async def test_reads_keep_registration_order_and_types(self) -> None:
        """in_realm follows registration order; re-registering moves to the end."""
        directory, _ = self.directory()
        for serial, name in ((1, "echo"), (2, "other"), (3, "echo")):
            await directory.register(entry(serial, name))
        await directory.register(entry(1, "other"))
        self.assertEqual([e.key[1] for e in await directory.in_realm(REALM)], [2, 3, 1])
        self.assertEqual(
            [e.key[1] for e in await directory.of_type(REALM, "acme", "echo")], [3]
        )
        self.assertEqual(
            [e.key[1] for e in await directory.of_type(REALM, "acme", "other")], [2, 1]
        )
        self.assertEqual(await directory.in_realm(REALM + 1), [])

    async def test_corrupt_hash_is_skipped_with_a_warning(self) -> None:
        """An unreadable hash is left out of answers and logged, not raised."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        directory, client = self.directory()
        await directory.register(entry(1))
        await directory.register(entry(2))
        await client.command(
            "HSET", f"{self.config.key_prefix}a:{REALM}:1", "id", b"\xff"
        )
        self.assertEqual([e.key for e in await directory.in_realm(REALM)], [(REALM, 2)])
        self.assertIsNone(await directory.lookup((REALM, 1)))
        self.assertTrue(
            any("unreadable directory entry" in e.get("log_format", "") for e in events)
        )

    async def test_entry_round_trips_every_field(self) -> None:
        """Spec, address, load figures and location come back as written."""
        directory, _ = self.directory()
        spec = actr_pb2.ServiceSpec(name="Echo", fingerprint="fp")
        written = attrs.evolve(
            entry(1, session=9),
            service_spec=spec,
            ws_address="wss://a.example/ws",
            availability=1,
            power_reserve=0.25,
            mailbox_backlog=3.0,
            sticky_client_ids=("x", "y"),
            location=(48.1, 11.5),
            node=directory.node_id,
        )
        await directory.register(written)
        self.assertEqual(await directory.lookup((REALM, 1)), written)

    async def test_reconnect_on_another_node_moves_the_actor(self) -> None:
        """set_online with a session claims the actor; the old node stops holding it."""
        first, _ = self.directory()
        second, _ = self.directory()
        await first.register(entry(1, session=1))
        offline = await first.set_online((REALM, 1), False)
        assert offline is not None
        self.assertFalse(offline.online)
        self.assertIsNone(await first.set_online((REALM, 1), False))
        back = await second.set_online((REALM, 1), True, now=1.0, session=7)
        assert back is not None
        self.assertEqual(
            (back.node, back.session, back.online), (second.node_id, 7, True)
        )
        self.assertIsNotNone(second.cached((REALM, 1)))
        # The first node's stale copy no longer removes the actor on expiry.
        stale = attrs.evolve(offline, last_heartbeat=0.0)
        first._local[(REALM, 1)] = stale
        expired = await first.expire(float(reactor.seconds()), 30.0)
        self.assertEqual(expired, [])
        self.assertIsNotNone(await second.lookup((REALM, 1)))

    async def test_expire_removes_this_nodes_silent_actors(self) -> None:
        """expire() drops the node's own stale entries from Redis and memory."""
        directory, _ = self.directory()
        await directory.register(entry(1, session=3))
        expired = await directory.expire(float(reactor.seconds()) + 100, 30.0)
        self.assertEqual([e.key for e in expired], [(REALM, 1)])
        self.assertIsNone(directory.cached((REALM, 1)))
        self.assertIsNone(await directory.lookup((REALM, 1)))

    async def test_subscriptions(self) -> None:
        """Subscribe is idempotent, unsubscribe and forget remove, all shared."""
        first, _ = self.directory()
        second, _ = self.directory()
        watcher = new_actr_id(REALM, 10, "acme", "watcher")
        target = actr_pb2.ActrType(manufacturer="acme", name="echo")
        self.assertTrue(await first.subscribe(target, watcher))
        self.assertTrue(await first.subscribe(target, watcher))
        self.assertEqual(first.subscription_count(), 1)
        self.assertEqual(await first.subscribed_actors(), [(REALM, 10)])
        (found,) = await second.subscribers(target)
        self.assertEqual((found.key, found.actr_id), ((REALM, 10), watcher))
        versioned = actr_pb2.ActrType(manufacturer="acme", name="echo", version="1")
        self.assertEqual(await second.subscribers(versioned), [])
        self.assertTrue(await first.subscribe(versioned, watcher))
        self.assertTrue(await second.unsubscribe(target, (REALM, 10)))
        self.assertFalse(await second.unsubscribe(target, (REALM, 10)))
        await second.forget_subscriptions((REALM, 10))
        self.assertEqual(await first.subscribers(versioned), [])

    async def test_spec_store_is_shared(self) -> None:
        """A spec registered on one node answers client_spec on another after fetch."""
        first, _ = self.directory()
        second, _ = self.directory()
        spec = actr_pb2.ServiceSpec(name="Echo", fingerprint="fp-9")
        await first.register(attrs.evolve(entry(1), service_spec=spec))
        echo = new_actr_id(REALM, 1, "acme", "echo").type
        self.assertIsNone(second.client_spec(echo, "fp-9"))
        await second.fetch_spec(echo, "fp-9")
        self.assertEqual(second.client_spec(echo, "fp-9"), spec)

    async def test_unix_socket_connection(self) -> None:
        """The same directory works over the server's unix socket."""
        config = RedisServer.get().config(unix=True)
        directory, _ = self.directory(config=config)
        await directory.register(entry(1))
        self.assertIsNotNone(await directory.lookup((REALM, 1)))


class LocationCacheTests(TestCase):
    """Where another node's actor is: remembered, refreshed without waiting."""

    timeout = 20

    async def test_a_stale_place_serves_while_it_is_refreshed(self) -> None:
        """Past the TTL the place still answers at once and is fetched again;
        an actor gone meanwhile is forgotten after that refresh."""
        config = RedisServer.get().config()
        clock = Clock()
        clients = []
        for _ in range(2):
            client = RedisClient(config)
            client.startService()
            self.addCleanup(client.stopService)
            clients.append(client)
        prefix = config.key_prefix
        holder = RedisDirectory(clients[0], reactor, new_node_id(), 30.0, prefix)
        asker = RedisDirectory(clients[1], clock, new_node_id(), 30.0, prefix)
        key = (REALM, 7)
        await holder.register(entry(7, session=5))
        self.assertIsNone(asker.location_now(key))  # never seen: ask Redis
        found = await asker.locate(key)
        assert found is not None
        self.assertEqual((found.node, found.session), (holder.node_id, 5))
        self.assertEqual(asker.location_now(key), found)
        await holder.remove(key)
        clock.advance(LOCATION_TTL + 0.1)
        # Stale: served at once, and a refresh asks Redis in the background.
        self.assertEqual(asker.location_now(key), found)
        for _ in range(50):
            if asker.location_now(key) is None:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertIsNone(asker.location_now(key))
        self.assertIsNone(await asker.locate(key))

    async def test_too_stale_a_place_is_not_used(self) -> None:
        """Two TTLs after it was fetched, a place is asked for again."""
        config = RedisServer.get().config()
        client = RedisClient(config)
        client.startService()
        self.addCleanup(client.stopService)
        clock = Clock()
        holder = RedisDirectory(client, reactor, new_node_id(), 30.0, config.key_prefix)
        asker = RedisDirectory(client, clock, new_node_id(), 30.0, config.key_prefix)
        await holder.register(entry(8))
        self.assertIsNotNone(await asker.locate((REALM, 8)))
        clock.advance(2 * LOCATION_TTL + 0.1)
        self.assertIsNone(asker.location_now((REALM, 8)))
