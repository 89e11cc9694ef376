"""Redis faults seen by a running daemon: each gives one clear line, no crash.

Redis restarted in the middle of traffic, a wrong password, a second node with
the same ``cluster.node_id`` and a corrupt hash. The tests that stop Redis run
a redis-server of their own (:meth:`RedisServer.private`), stopped and started
again by its PID on the same port.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from actrix.core.redis_client import RedisClient
from actrix.core.settings import ClusterConfig, RedisConfig, Secret
from actrix.proto import actr_pb2
from actrix.signaling import messages as m
from tests.daemon import (
    add_realm,
    http_client,
    http_port,
    make_settings,
    start_daemon,
)
from tests.integration.test_signaling import (
    NO_LIMITS,
    REALM,
    SIGNALING_AIS_KS,
    allow,
    sleep,
)
from tests.integration.test_signaling_directory import target
from tests.redisserver import RedisServer
from tests.signaling_client import SignalingClient


class FaultCase(TestCase):
    timeout = 40

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.directory = Path(self.mktemp())
        self.nodes = 0

    def start(self, redis: RedisConfig, node_id: str | None = None) -> int:
        """A daemon (SQLite files of its own) on ``redis``; its HTTP port."""
        directory = self.directory / f"node{self.nodes}"
        self.nodes += 1
        add_realm(directory, REALM)
        settings = make_settings(
            directory, enable=SIGNALING_AIS_KS, overrides=NO_LIMITS
        )
        settings = attrs.evolve(
            settings, redis=redis, cluster=ClusterConfig(node_id=node_id)
        )
        return http_port(start_daemon(self, settings))

    def lines(self, text: str) -> list[str]:
        """Log lines (formatted) containing ``text``."""
        from twisted.logger import formatEvent

        found = []
        for event in self.events:
            line = formatEvent(event)
            if text in line:
                found.append(line)
        return found

    async def register(
        self, port: int, name: str, acl: actr_pb2.Acl | None = None
    ) -> tuple[SignalingClient, actr_pb2.RegisterResponse]:
        client = await SignalingClient.connect(reactor, port)
        self.addCleanup(client.drop)
        return client, await client.register(REALM, name=name, acl=acl)

    async def health(self, port: int) -> dict[str, Any]:
        response = await http_client(self).get(f"http://127.0.0.1:{port}/health")
        body: dict[str, Any] = json.loads(await response.content())
        return body


class RedisRestartTests(FaultCase):
    """Redis goes away under traffic and comes back; the daemon rides it out."""

    async def test_redis_restart_in_the_middle_of_traffic(self) -> None:
        """Register gets 503 while Redis is down, local relays go on, all resumes."""
        server = RedisServer.private()
        self.addCleanup(server.stop)
        config = server.config()
        port = self.start(config)
        a, ok = await self.register(port, "svc", allow(("acme", "caller")))
        self.assertTrue(ok.HasField("success"), str(ok))
        b, ok = await self.register(port, "caller", allow(("acme", "svc")))
        self.assertTrue(ok.HasField("success"), str(ok))
        assert a.actr_id is not None and b.actr_id is not None
        b.send_candidate(a.actr_id, "candidate:before")
        relay = (await a.next_push()).actr_relay
        self.assertEqual(relay.ice_candidate.candidate, "candidate:before")
        reply = await b.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=target("newcomer")
            )
        )
        self.assertTrue(reply.subscribe_actr_up_response.HasField("success"))

        server.halt()
        for _ in range(60):
            if (await self.health(port))["cluster"]["redis"] == "unreachable":
                break
            await sleep(0.05)
        body = await self.health(port)
        self.assertEqual((body["status"], body["failed"]), ("degraded", ["redis"]))
        _, refused = await self.register(port, "late")
        self.assertEqual(refused.error.code, 503)
        self.assertEqual(refused.error.message, m.DIRECTORY_UNAVAILABLE)
        # Actors held here are still served: relays and heartbeats.
        b.send_candidate(a.actr_id, "candidate:during")
        relay = (await a.next_push()).actr_relay
        self.assertEqual(relay.ice_candidate.candidate, "candidate:during")
        self.assertTrue((await a.ping()).HasField("pong"))
        await sleep(1.5)
        self.assertEqual(len(self.lines("unreachable for")), 1, self.lines("Redis"))

        server.start()  # same port, empty: its data died with it
        for _ in range(100):
            _, ok = await self.register(port, "late")
            if ok.HasField("success"):
                break
            await sleep(0.1)
        self.assertTrue(ok.HasField("success"), str(ok))
        for _ in range(30):  # the client checks once a second
            if self.lines("reachable again"):
                break
            await sleep(0.1)
        self.assertEqual(len(self.lines("reachable again")), 1)
        # A's next Ping writes its entry back: found again by routes; B's
        # writes back its presence subscription too.
        self.assertTrue((await a.ping()).HasField("pong"))
        self.assertTrue((await b.ping()).HasField("pong"))
        newcomer, ok = await self.register(port, "newcomer", allow(("acme", "caller")))
        self.assertTrue(ok.HasField("success"), str(ok))
        up = (await b.next_push()).server_to_actr.actr_up_event
        self.assertEqual(up.actor_id, newcomer.actr_id)
        reply = await b.call(
            route_candidates_request=actr_pb2.RouteCandidatesRequest(
                target_type=target("svc")
            )
        )
        self.assertEqual(
            list(reply.route_candidates_response.success.candidates), [a.actr_id]
        )
        self.assertEqual((await self.health(port))["status"], "ok")


class RedisPasswordTests(FaultCase):
    async def test_wrong_password_refuses_registrations_with_one_line(self) -> None:
        """A wrong password: one line naming the auth failure; Register gets 503."""
        server = RedisServer.private(password="right-password")
        self.addCleanup(server.stop)
        config = attrs.evolve(server.config(), password=Secret("wrong-password"))
        port = self.start(config)
        await sleep(1.5)
        _, refused = await self.register(port, "svc")
        self.assertEqual(refused.error.code, 503)
        await sleep(1.0)
        lines = self.lines("unreachable for")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("auth", lines[0].lower())
        self.assertNotIn("wrong-password", "\n".join(self.lines("")))


class DuplicateNodeIdTests(FaultCase):
    async def test_duplicate_node_id_is_logged_once(self) -> None:
        """Two nodes named alike: one error line; both keep serving."""
        config = RedisServer.get().config()
        first = self.start(config, node_id="edge-1")
        second = self.start(config, node_id="edge-1")
        for _ in range(60):
            if self.lines("is also the name of running node"):
                break
            await sleep(0.1)
        await sleep(1.5)
        lines = self.lines("is also the name of running node")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("cluster.node_id edge-1", lines[0])
        for port in (first, second):
            _, ok = await self.register(port, "svc")
            self.assertTrue(ok.HasField("success"), str(ok))
            body = await self.health(port)
            self.assertEqual(body["cluster"]["name"], "edge-1")
            self.assertEqual(len(body["cluster"]["nodes"]), 2)


class CorruptHashTests(FaultCase):
    async def test_corrupt_hash_is_skipped_with_one_line(self) -> None:
        """A hash broken by hand: left out of every answer, one line for many reads."""
        config = RedisServer.get().config()
        port = self.start(config)
        broken, ok = await self.register(port, "svc", allow(("acme", "caller")))
        self.assertTrue(ok.HasField("success"), str(ok))
        good, ok = await self.register(port, "svc", allow(("acme", "caller")))
        caller, ok = await self.register(port, "caller")
        assert broken.actr_id is not None and good.actr_id is not None
        client = RedisClient(config)
        client.startService()
        self.addCleanup(client.stopService)
        key = f"{config.key_prefix}a:{REALM}:{broken.actr_id.serial_number}"
        await client.command("HSET", key, "sticky", b"{not json")
        for _ in range(5):
            reply = await caller.call(
                route_candidates_request=actr_pb2.RouteCandidatesRequest(
                    target_type=target("svc")
                )
            )
            self.assertEqual(
                list(reply.route_candidates_response.success.candidates),
                [good.actr_id],
            )
        lines = self.lines("unreadable directory entry")
        self.assertEqual(len(lines), 1, lines)
