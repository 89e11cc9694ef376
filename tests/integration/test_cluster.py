"""Two actrix daemons on one redis-server: actors on different nodes meet.

Both daemons run in this process (two root services on their own ports, one
reactor) and are deployed as the README says nodes are: realms, ACL, KS keys
and the AIS key in one PostgreSQL (the suite's cluster, a schema prefix per
test), the actor directory and the bus on the suite's redis-server (a key
prefix per test). A node that dies without a word is played by a directory that
beat once, registered an actor and never beat again: exactly what Redis sees
of a process killed with -9.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from actrix import cli
from actrix.core.actrid import new_actr_id, type_key
from actrix.core.directory import ActorEntry
from actrix.core.redis_client import RedisClient
from actrix.core.redis_directory import NODE_TTL, RedisDirectory, new_node_id
from actrix.core.settings import RedisConfig
from actrix.proto import actr_pb2
from actrix.root import ActrixService
from actrix.signaling.sessions import REPLACED_CODE
from tests.daemon import (
    config_text,
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
from tests.integration.test_signaling_directory import spec, target
from tests.pgcluster import PgCluster, storage_toml
from tests.redisserver import RedisServer
from tests.signaling_client import SignalingClient

TWISTD = str(Path(sys.executable).parent / "twistd")


class ClusterCase(TestCase):
    """Two in-process nodes on the shared PostgreSQL and Redis of one test."""

    timeout = 30

    def setUp(self) -> None:
        self.redis = RedisServer.get().config()
        cluster = PgCluster.get()
        self.pg = cluster.config()
        self.addCleanup(cluster.drop_schemas, self.pg.schema_prefix)
        path = self.config_file()
        out, err = io.StringIO(), io.StringIO()
        argv = ["realm", "add", "-c", str(path), "--id", str(REALM), "--name", "x"]
        self.assertEqual(cli.run(argv, out, err), 0, err.getvalue())
        self.roots = [self.node() for _ in range(2)]
        self.ports = [http_port(root) for root in self.roots]

    def config_file(self, port: int = 0) -> Path:
        """A node's config file: the shared PostgreSQL and Redis, HTTP on ``port``."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        text = config_text(directory / "db", SIGNALING_AIS_KS) + storage_toml(self.pg)
        text += (
            f'[redis]\nhost = "{self.redis.host}"\nport = {self.redis.port}\n'
            f'key_prefix = "{self.redis.key_prefix}"\n'
        )
        if port:
            text = text.replace("port = 0\n", f"port = {port}\n", 1)
        path = directory / "actrix.toml"
        path.write_text(text)
        return path

    def node(self) -> ActrixService:
        settings = make_settings(
            Path(self.mktemp()),
            enable=SIGNALING_AIS_KS,
            overrides=NO_LIMITS + storage_toml(self.pg),
        )
        return start_daemon(self, attrs.evolve(settings, redis=self.redis))

    async def client(self, node: int) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.ports[node])
        self.addCleanup(client.drop)
        return client

    async def registered(
        self,
        node: int,
        name: str,
        spec: actr_pb2.ServiceSpec | None = None,
        acl: actr_pb2.Acl | None = None,
    ) -> SignalingClient:
        client = await self.client(node)
        response = await client.register(REALM, name=name, spec=spec, acl=acl)
        self.assertTrue(response.HasField("success"), str(response))
        return client

    async def watched_across(self) -> tuple[SignalingClient, SignalingClient]:
        """A watcher on node 0 subscribed to type ``svc``, and an ``svc`` actor
        on node 1 whose up event the watcher has heard: (watcher, server)."""
        watcher = await self.registered(0, "watcher")
        reply = await watcher.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=target("svc")
            )
        )
        self.assertTrue(reply.subscribe_actr_up_response.HasField("success"))
        server = await self.registered(1, "svc", acl=allow(("acme", "watcher")))
        up = (await watcher.next_push()).server_to_actr.actr_up_event
        self.assertEqual(up.actor_id, server.actr_id)
        return watcher, server

    async def until_discovered(self, client: SignalingClient, name: str) -> None:
        """Wait until ``client``'s node lists type ``name`` to it.

        ACL rows written by one node reach the others' caches through
        PostgreSQL notifications, within a second; checks on the other node
        (discovery, relay ACL, presence) see them after that.
        """
        for _ in range(60):
            reply = await client.call(discovery_request=actr_pb2.DiscoveryRequest())
            entries = reply.discovery_response.success.entries
            if name in [e.actr_type.name for e in entries]:
                return
            await sleep(0.05)
        self.fail(f"{name} never became visible")


class TwoNodeTests(ClusterCase):
    """Discovery, routes, relays, roles and presence across two nodes."""

    async def test_discovery_routes_and_spec_across_nodes(self) -> None:
        """An actor on node 0 is discovered, routed to and its spec read on node 1."""
        server = await self.registered(
            0, "echo", spec=spec("EchoService"), acl=allow(("acme", "caller"))
        )
        caller = await self.registered(1, "caller")
        await self.until_discovered(caller, "echo")
        reply = await caller.call(discovery_request=actr_pb2.DiscoveryRequest())
        entries = reply.discovery_response.success.entries
        self.assertEqual([e.actr_type.name for e in entries], ["echo"])
        reply = await caller.call(
            route_candidates_request=actr_pb2.RouteCandidatesRequest(
                target_type=target("echo")
            )
        )
        ok = reply.route_candidates_response.success
        self.assertEqual(list(ok.candidates), [server.actr_id])
        reply = await caller.call(
            get_service_spec_request=actr_pb2.GetServiceSpecRequest(name="EchoService")
        )
        self.assertEqual(reply.get_service_spec_response.success.fingerprint, "fp-1")

    async def test_relay_both_ways(self) -> None:
        """ICE candidates cross nodes both ways, token stripped, in order."""
        server = await self.registered(0, "svc", acl=allow(("acme", "caller")))
        caller = await self.registered(1, "caller", acl=allow(("acme", "svc")))
        assert server.actr_id is not None and caller.actr_id is not None
        await self.until_discovered(caller, "svc")
        await self.until_discovered(server, "caller")
        for i in range(3):
            caller.send_candidate(server.actr_id, f"candidate:{i}")
        received = [(await server.next_push()).actr_relay for _ in range(3)]
        self.assertEqual(
            [r.ice_candidate.candidate for r in received],
            [f"candidate:{i}" for i in range(3)],
        )
        self.assertEqual(received[0].source, caller.actr_id)
        self.assertEqual(received[0].credential.encrypted_token, b"")
        server.send_candidate(caller.actr_id, "candidate:back")
        back = (await caller.next_push()).actr_relay
        self.assertEqual(back.ice_candidate.candidate, "candidate:back")
        self.assertEqual(back.source, server.actr_id)

    async def test_acl_denial_is_answered_by_the_senders_node(self) -> None:
        """A relay the target's ACL refuses gets 403 from the sender's node."""
        server = await self.registered(0, "svc")
        caller = await self.registered(1, "caller")
        assert server.actr_id is not None
        envelope, relay = caller.relay_envelope(server.actr_id)
        relay.ice_candidate.candidate = "x"
        reply = (await caller.request(envelope)).server_to_actr
        self.assertEqual(reply.error.code, 403)
        await sleep(0.2)
        self.assertEqual(len(server.pushes), 0)

    async def test_role_negotiation_across_nodes(self) -> None:
        """Both parties get a RoleAssignment; exactly one offers."""
        first = await self.registered(0, "peer", acl=allow(("acme", "peer")))
        second = await self.registered(1, "peer")
        assert first.actr_id is not None and second.actr_id is not None
        envelope, relay = first.relay_envelope(second.actr_id)
        negotiation = relay.role_negotiation
        getattr(negotiation, "from").CopyFrom(first.actr_id)
        negotiation.to.CopyFrom(second.actr_id)
        negotiation.realm_id = REALM
        first.send(envelope)
        mine = (await first.next_push()).actr_relay.role_assignment
        theirs = (await second.next_push()).actr_relay.role_assignment
        expected = first.actr_id.serial_number < second.actr_id.serial_number
        self.assertEqual((mine.is_offerer, theirs.is_offerer), (expected, not expected))

    async def test_presence_up_and_down_across_nodes(self) -> None:
        """A watcher on node 0 hears an actor of node 1 come and go."""
        watcher, server = await self.watched_across()
        await server.call(
            unregister_request=actr_pb2.UnregisterRequest(actr_id=server.actr_id)
        )
        down = (await watcher.next_push()).server_to_actr.actr_down_event
        self.assertEqual((down.actor_id, down.reason), (server.actr_id, "unregistered"))

    async def test_dead_node_actors_leave_with_a_down_event(self) -> None:
        """A node that stops beating loses its actors; subscribers hear 'expired'."""
        watcher = await self.registered(0, "watcher", acl=allow(("acme", "svc")))
        await watcher.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=target("svc")
            )
        )
        # An allow row for watcher -> svc, the way svc's own Register would write it.
        await self.registered(1, "svc", acl=allow(("acme", "watcher")))
        await watcher.next_push()
        await self.until_discovered(watcher, "svc")
        dead = await self.dead_node(self.redis)
        actr_id = new_actr_id(REALM, 4242, "acme", "svc")
        await dead.register(
            ActorEntry(
                actr_id=actr_id,
                type_key=type_key(actr_id.type),
                service_name="acme/svc",
                service_spec=None,
                ws_address=None,
                last_heartbeat=float(reactor.seconds()),
                session=1,
            )
        )
        started = reactor.seconds()
        down = (await watcher.next_push(NODE_TTL + 5)).server_to_actr.actr_down_event
        self.assertEqual((down.actor_id, down.reason), (actr_id, "expired"))
        self.assertLess(reactor.seconds() - started, NODE_TTL + 3)
        caller = await self.registered(1, "caller")
        reply = await caller.call(
            route_candidates_request=actr_pb2.RouteCandidatesRequest(
                target_type=target("svc")
            )
        )
        serials = [
            c.serial_number for c in reply.route_candidates_response.success.candidates
        ]
        self.assertNotIn(4242, serials)

    async def dead_node(self, config: RedisConfig) -> RedisDirectory:
        """A directory that says it is alive once, then never again."""
        client = RedisClient(config)
        client.startService()
        self.addCleanup(client.stopService)
        directory = RedisDirectory(
            client, reactor, new_node_id(), 300.0, config.key_prefix
        )
        self.assertEqual(await directory.beat(float(reactor.seconds())), [])
        return directory

    async def test_health_and_metrics_show_the_cluster(self) -> None:
        """/health lists both nodes; /metrics counts actors, bus messages, RTTs."""
        server = await self.registered(0, "svc", acl=allow(("acme", "caller")))
        caller = await self.registered(1, "caller")
        assert server.actr_id is not None
        await self.until_discovered(caller, "svc")
        caller.send_candidate(server.actr_id, "candidate:metrics")
        await server.next_push()
        await sleep(1.5)  # a node beat or two: node list and actor counts
        client = http_client(self)
        response = await client.get(f"http://127.0.0.1:{self.ports[1]}/health")
        body = json.loads(await response.content())
        cluster = body["cluster"]
        self.assertEqual(cluster["redis"], "up")
        self.assertEqual(len(cluster["nodes"]), 2)
        self.assertIn(cluster["node_id"], cluster["nodes"])
        self.assertEqual(cluster["actors"], {"local": 1, "remote": 1})
        response = await client.get(f"http://127.0.0.1:{self.ports[1]}/metrics")
        text = (await response.content()).decode()
        for line in (
            "actrix_cluster_nodes 2.0",
            'actrix_cluster_actors{where="local"} 1.0',
            'actrix_cluster_actors{where="remote"} 1.0',
            'actrix_cluster_bus_messages_total{direction="sent"} 1.0',
            "actrix_redis_up 1.0",
        ):
            self.assertIn(line, text)
        count = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("actrix_redis_round_trip_seconds_count")
        ]
        self.assertTrue(count and count[0] > 0, count)
        response = await client.get(f"http://127.0.0.1:{self.ports[0]}/metrics")
        text = (await response.content()).decode()
        self.assertIn(
            'actrix_cluster_bus_messages_total{direction="received"} 1.0', text
        )

    async def test_url_identity_reconnect_on_the_other_node(self) -> None:
        """A URL-identity reconnect to node 1 keeps the actor and moves it there.

        Node 0 closes the old socket (replaced); relays from node 0 reach the
        actor on node 1. The new process id part keeps node ids unique.
        """
        server = await self.registered(0, "svc", acl=allow(("acme", "caller")))
        caller = await self.registered(0, "caller")
        assert server.actr_id is not None
        moved = await SignalingClient.reconnect(reactor, self.ports[1], server)
        self.addCleanup(moved.drop)
        self.assertEqual(await server.wait_closed(), REPLACED_CODE)
        caller.send_candidate(server.actr_id, "candidate:moved")
        relay = (await moved.next_push()).actr_relay
        self.assertEqual(relay.ice_candidate.candidate, "candidate:moved")
        self.assertNotEqual(new_node_id(), new_node_id())


class _Output(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[int] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        value: Any = reason.value
        code = getattr(value, "exitCode", None)
        self.ended.callback(code if code is not None else -(value.signal or 0))


class KilledNodeTests(ClusterCase):
    """A twistd node killed with SIGKILL, and restarted, next to a live node."""

    def setUp(self) -> None:
        super().setUp()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.victim_port = int(probe.getsockname()[1])
        self.victim_config = self.config_file(self.victim_port)

    async def spawn(self) -> IProcessTransport:
        """Start the twistd node and wait until it takes WebSockets."""
        proto = _Output()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).parents[2])
        transport = reactor.spawnProcess(
            proto,
            TWISTD,
            [
                TWISTD,
                "--nodaemon",
                "--pidfile=",
                "actrix",
                "-c",
                str(self.victim_config),
            ],
            env=env,
            path=str(self.victim_config.parent),
        )
        self.addCleanup(lambda: proto.ended)
        self.addCleanup(self.kill, transport)
        for _ in range(300):
            try:
                probe = await SignalingClient.connect(reactor, self.victim_port)
            except Exception:
                await sleep(0.05)
                continue
            probe.drop()
            return transport
        self.fail("the twistd node did not start")

    @staticmethod
    def kill(transport: IProcessTransport) -> None:
        with contextlib.suppress(ProcessExitedAlready):
            transport.signalProcess(signal.SIGKILL)

    async def victim_client(self) -> SignalingClient:
        client = await SignalingClient.connect(reactor, self.victim_port)
        self.addCleanup(client.drop)
        return client

    async def test_kill_9_expires_actors_and_restart_does_not_resurrect(self) -> None:
        """SIGKILL a node: its actor goes down ('expired') within the liveness TTL.

        The restarted node (same config, new incarnation) does not bring the
        dead actor back: routes from either node no longer name it.
        """
        watcher = await self.registered(0, "watcher")
        await watcher.call(
            subscribe_actr_up_request=actr_pb2.SubscribeActrUpRequest(
                target_type=target("svc")
            )
        )
        transport = await self.spawn()
        server = await self.victim_client()
        response = await server.register(
            REALM, name="svc", acl=allow(("acme", "watcher"), ("acme", "caller"))
        )
        self.assertTrue(response.HasField("success"), str(response))
        up = (await watcher.next_push()).server_to_actr.actr_up_event
        self.assertEqual(up.actor_id, server.actr_id)
        # Either in-process node may take the dead one over: both see the ACL.
        await self.until_discovered(watcher, "svc")
        await self.until_discovered(await self.registered(1, "watcher"), "svc")
        self.kill(transport)
        killed = reactor.seconds()
        down = (await watcher.next_push(NODE_TTL + 5)).server_to_actr.actr_down_event
        self.assertEqual((down.actor_id, down.reason), (server.actr_id, "expired"))
        self.assertLess(reactor.seconds() - killed, NODE_TTL + 3)
        await self.spawn()
        restarted = await self.victim_client()
        response = await restarted.register(REALM, name="caller")
        self.assertTrue(response.HasField("success"), str(response))
        for caller in (await self.registered(1, "caller"), restarted):
            reply = await caller.call(
                route_candidates_request=actr_pb2.RouteCandidatesRequest(
                    target_type=target("svc")
                )
            )
            self.assertEqual(
                list(reply.route_candidates_response.success.candidates), []
            )
