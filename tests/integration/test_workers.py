"""``workers = 2`` under a real supervisor: twistd, two workers, one redis-server.

The supervisor owns the sockets; each worker is a twistd process of its own
with its own node id in the Redis directory. Actors registered through the one
HTTP port land on both workers, reach each other over the bus, and a worker
killed with -9 comes back by itself. SIGTERM stops everything with status 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from actrix import cli
from actrix.core.redis_client import RedisClient
from actrix.core.settings import RedisConfig
from actrix.proto import actr_pb2
from actrix.stun import codec
from actrix.tap import Options
from tests.daemon import add_realm, config_text, http_client
from tests.integration.test_signaling import NO_LIMITS, REALM, allow, sleep
from tests.integration.test_signaling_directory import target
from tests.redisserver import RedisServer
from tests.rooms_client import JsonPeer
from tests.signaling_client import SignalingClient
from tests.twistdproc import TwistdProcess, running

SIGNALING_AIS_KS_STUN = 27


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    return free_ports(1, kind)[0]


def free_ice_port(taken: Sequence[int]) -> int:
    """A port free for UDP and TCP both (STUN/TURN listen on both), not in ``taken``."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            if port in taken:
                continue
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``count`` distinct free ports (all held open while they are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, kind))
            probe.bind(("127.0.0.1", 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def write_config(
    directory: Path, http: int, ice: int, extra: str, enable: int = 27
) -> Path:
    text = config_text(directory / "db", enable, NO_LIMITS + extra)
    text = text.replace("port = 0\n", f"port = {http}\n", 1)
    text = text.replace("port = 0\n", f"port = {ice}\n", 1)
    path = directory / "actrix.toml"
    path.write_text(text)
    return path


def two_worker_config(
    test: TestCase,
    redis: RedisConfig,
    extra: str,
    http: int,
    taken: Sequence[int] = (),
    enable: int = 27,
    ice: int | None = None,
) -> Path:
    """Two workers on ``redis`` plus ``extra`` (whose own ports are ``taken``)."""
    directory = Path(test.mktemp()).resolve()
    directory.mkdir(parents=True)
    add_realm(directory / "db", REALM)
    tables = (
        f'[redis]\nhost = "{redis.host}"\nport = {redis.port}\n'
        f'key_prefix = "{redis.key_prefix}"\n'
        "[cluster]\nworkers = 2\n" + extra
    )
    if ice is None:
        ice = free_ice_port([http, *taken])
    return write_config(directory, http, ice, tables, enable)


class _Stun(DatagramProtocol):
    def __init__(self) -> None:
        self.answer: Deferred[bytes] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        if not self.answer.called:
            self.answer.callback(datagram)


class WorkersTests(TestCase):
    """Two workers behind one supervisor, sharing the directory on Redis."""

    timeout = 90

    def setUp(self) -> None:
        self.redis = RedisServer.get().config()
        self.http = free_port()
        self.ice = free_ice_port([self.http])
        self.config = two_worker_config(
            self, self.redis, 'node_id = "box1"\n', self.http, ice=self.ice
        )
        self.client_redis = RedisClient(self.redis)
        self.client_redis.startService()
        self.addCleanup(self.client_redis.stopService)

    async def registered(
        self, name: str, acl: actr_pb2.Acl | None = None
    ) -> SignalingClient:
        for _ in range(100):
            try:
                client = await SignalingClient.connect(reactor, self.http)
            except Exception:
                await sleep(0.05)
                continue
            self.addCleanup(client.drop)
            response = await client.register(REALM, name=name, acl=acl)
            self.assertTrue(response.HasField("success"), str(response))
            return client
        self.fail("no worker took the connection")

    async def node_of(self, client: SignalingClient) -> str:
        actr_id = client.actr_id
        assert actr_id is not None
        key = f"{self.redis.key_prefix}a:{REALM}:{actr_id.serial_number}"
        node = await self.client_redis.command("HGET", key, "node")
        return bytes(node).decode()

    async def on_each_worker(
        self, name: str, acl: actr_pb2.Acl
    ) -> dict[str, SignalingClient]:
        """Register ``name`` actors until both workers hold one."""
        found: dict[str, SignalingClient] = {}
        for _ in range(60):
            client = await self.registered(name, acl)
            worker = (await self.node_of(client)).split("-")[1]
            found.setdefault(worker, client)
            if len(found) == 2:
                return found
        self.fail(f"every connection went to {list(found)}")

    async def stun_binding(self) -> bytes:
        proto = _Stun()
        port = reactor.listenUDP(0, proto, interface="127.0.0.1")  # type: ignore[attr-defined]  # IReactorUDP
        self.addCleanup(port.stopListening)
        port.write(
            codec.encode(codec.BINDING_REQUEST, b"worker-txid1", []),
            ("127.0.0.1", self.ice),
        )
        proto.answer.addTimeout(5, reactor)
        return await proto.answer

    async def relay_both_ways(
        self, first: SignalingClient, second: SignalingClient, tag: str
    ) -> None:
        """``first`` (worker 0) and ``second`` (worker 1) relay to each other."""
        assert first.actr_id is not None and second.actr_id is not None
        name = second.actr_id.type.name
        for _ in range(60):
            reply = await first.call(
                route_candidates_request=actr_pb2.RouteCandidatesRequest(
                    target_type=target(name)
                )
            )
            found = reply.route_candidates_response.success.candidates
            if second.actr_id in found:
                break
            await sleep(0.05)
        first.send_candidate(second.actr_id, f"candidate:{tag}:w0-to-w1")
        relay = (await second.next_push()).actr_relay
        self.assertEqual(relay.ice_candidate.candidate, f"candidate:{tag}:w0-to-w1")
        second.send_candidate(first.actr_id, f"candidate:{tag}:w1-to-w0")
        back = (await first.next_push()).actr_relay
        self.assertEqual(back.ice_candidate.candidate, f"candidate:{tag}:w1-to-w0")

    async def test_two_workers_share_restart_and_stop(self) -> None:
        """Actors on both workers relay both ways; kill -9 restarts; SIGTERM: exit 0."""
        supervisor = TwistdProcess.spawn(self, self.config)
        await supervisor.wait_for(r"2 workers running", 60)
        pids = {}
        for i in range(2):
            started = await supervisor.wait_for(rf"worker {i} started \(pid (\d+)\)")
            pids[i] = int(started.group(1))
        callers = await self.on_each_worker("peer", allow(("acme", "peer")))
        self.assertEqual(sorted(callers), ["w0", "w1"])
        await self.relay_both_ways(callers["w0"], callers["w1"], "first")
        # Each worker sent one relay to the other over their link, none by Redis.
        response = await http_client(self).get(f"http://127.0.0.1:{self.http}/metrics")
        text = (await response.content()).decode()
        for line in (
            'actrix_cluster_sibling_messages_total{direction="sent"} 1.0',
            'actrix_cluster_sibling_messages_total{direction="received"} 1.0',
            "actrix_cluster_sibling_links 1.0",
            'actrix_cluster_bus_messages_total{direction="sent"} 0.0',
        ):
            self.assertIn(line, text)
        answer = await self.stun_binding()
        self.assertEqual(codec.decode(answer).transaction_id, b"worker-txid1")

        mark = supervisor.mark()
        supervisor_pid = supervisor.pid
        os.kill(pids[1], signal.SIGKILL)
        await supervisor.wait_for(
            rf"worker 1 \(pid {pids[1]}\) killed by signal 9; restarting", start=mark
        )
        restarted = await supervisor.wait_for(
            r"worker 1 started \(pid (\d+)\)", start=mark
        )
        new_pid = int(restarted.group(1))
        self.assertNotEqual(new_pid, pids[1])
        await supervisor.wait_for(r"bus listening on .*box1-w1-", start=mark)
        again = await self.on_each_worker("again", allow(("acme", "again")))
        self.assertEqual(sorted(again), ["w0", "w1"])
        # The old worker's link is gone; a new one reaches the restarted worker.
        await self.relay_both_ways(again["w0"], again["w1"], "after-restart")
        self.assertEqual(supervisor.count("killed by signal 9"), 1)
        self.assertTrue(running(supervisor_pid))

        supervisor.signal(signal.SIGTERM)
        self.assertEqual(await supervisor.ended, 0)
        await supervisor.wait_for(r"all workers stopped")
        for pid in (pids[0], new_pid):
            self.assertFalse(running(pid), f"worker {pid} still running")


class WorkerStartFailureTests(TestCase):
    """A worker that cannot start stops the supervisor: status 1, one line."""

    timeout = 60

    async def test_worker_failing_at_start_ends_the_supervisor(self) -> None:
        """A Redis CA file that is missing: the worker exits, the supervisor too."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        add_realm(directory / "db", REALM)
        extra = (
            '[redis]\nhost = "127.0.0.1"\ntls = true\n'
            f'tls_ca = "{directory / "missing-ca.pem"}"\n'
            "[cluster]\nworkers = 2\n"
        )
        config = write_config(directory, free_port(), 0, extra, enable=25)
        supervisor = TwistdProcess.spawn(self, config)
        self.assertEqual(await supervisor.ended, 1)
        self.assertEqual(supervisor.count("worker 0 failed to start; stopping"), 1)
        self.assertEqual(supervisor.count("redis.tls_ca:"), 1)
        self.assertEqual(supervisor.count("worker 1 started"), 0)


class WorkersConfigTests(SynchronousTestCase):
    """workers > 1 needs Redis: ``actrix check`` and ``--workers`` say so."""

    def config(self, extra: str) -> Path:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        return write_config(directory, 0, 0, extra, enable=25)

    def test_check_refuses_workers_without_redis(self) -> None:
        """``actrix check`` exits 1 naming cluster.workers and [redis]."""
        path = self.config("[cluster]\nworkers = 2\n")
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.run(["check", "-c", str(path)], out, err), 1)
        said = out.getvalue() + err.getvalue()
        self.assertIn("cluster.workers: 2 workers", said)
        self.assertIn("[redis]", said)

    def test_check_refuses_the_admin_console_on_the_main_site(self) -> None:
        """With workers, the console must be on its own listener (worker 0)."""
        path = self.config(
            '[redis]\nhost = "127.0.0.1"\n[cluster]\nworkers = 2\n'
            "[admin]\nenabled = true\non_main_site = true\n"
        )
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.run(["check", "-c", str(path)], out, err), 1)
        said = out.getvalue() + err.getvalue()
        self.assertIn("admin.on_main_site: with workers", said)
        self.assertIn("[bind.admin]", said)

    def test_workers_option_without_redis_is_a_usage_error(self) -> None:
        """``twistd actrix --workers 2`` without [redis] is refused before start."""
        path = self.config("")
        options = Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["-c", str(path), "--workers", "2"])
        self.assertIn("cluster.workers: 2 workers", str(caught.exception))
        options = Options()
        options.parseOptions(["-c", str(path), "--workers", "1"])
        self.assertEqual(options.settings.cluster.workers, 1)

    def test_workers_option_overrides_the_config(self) -> None:
        """``--workers 3`` with [redis] sets cluster.workers; 0 is refused."""
        path = self.config('[redis]\nhost = "127.0.0.1"\n')
        options = Options()
        options.parseOptions(["-c", str(path), "--workers", "3"])
        self.assertEqual(options.settings.cluster.workers, 3)
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["-c", str(path), "--workers", "0"])


class WorkerZeroListenersTests(TestCase):
    """Listeners only worker 0 serves: the admin console and rooms."""

    timeout = 90

    async def started(
        self, table: Callable[[int], str], enable: int = 27
    ) -> tuple[TwistdProcess, Path, int, int]:
        """Two workers running with ``table(port)`` added: supervisor, config,
        the HTTP port and ``port``."""
        http, port = free_ports(2)
        redis = RedisServer.get().config()
        config = two_worker_config(self, redis, table(port), http, [port], enable)
        supervisor = TwistdProcess.spawn(self, config)
        await supervisor.wait_for(r"2 workers running", 60)
        return supervisor, config, http, port

    async def test_admin_listener_is_served_once(self) -> None:
        """Both workers start; the admin API answers on its own port."""
        supervisor, config, http, admin = await self.started(
            lambda port: (
                "[admin]\nenabled = true\n"
                f'[bind.admin]\nip = "127.0.0.1"\nport = {port}\n'
            )
        )
        out, err = io.StringIO(), io.StringIO()
        args = ["admin-token", "create", "--name", "ops", "-c", str(config)]
        self.assertEqual(cli.run(args, out, err), 0, err.getvalue())
        bearer: Any = {"Authorization": f"Bearer {out.getvalue().splitlines()[0]}"}
        client = http_client(self)
        url = f"http://127.0.0.1:{admin}/admin/api/v1"
        response = await client.get(f"{url}/node")
        self.assertEqual(response.code, 401)
        await response.content()
        # Worker 0 serves the API; the directory on Redis has every actor,
        # whichever worker accepted it: register until both hold some.
        actors = set()
        for _ in range(60):
            actor = await SignalingClient.connect(reactor, http)
            self.addCleanup(actor.drop)
            self.assertTrue((await actor.register(REALM)).HasField("success"))
            assert actor.actr_id is not None
            actors.add(actor.actr_id.serial_number)
            response = await client.get(f"{url}/actors?limit=100", headers=bearer)
            self.assertEqual(response.code, 200)
            listed = json.loads(await response.content())
            if len({a["node"] for a in listed["items"]}) == 2:
                break
        self.assertEqual({int(a["serial"], 16) for a in listed["items"]}, actors)
        self.assertEqual(len({a["node"] for a in listed["items"]}), 2, listed)
        supervisor.signal(signal.SIGTERM)
        self.assertEqual(await supervisor.ended, 0)

    async def test_rooms_on_their_own_listener_beside_workers(self) -> None:
        """Rooms run in worker 0 on [bind.rooms]; signaling runs in both."""
        supervisor, _, http, rooms = await self.started(
            lambda port: (
                "[services.rooms]\nallow_anonymous = true\n"
                f'[bind.rooms]\nip = "127.0.0.1"\nport = {port}\n'
            ),
            enable=27 | 32,
        )
        peers = []
        for _ in range(4):  # every one reaches worker 0, the rooms' only home
            peer = await JsonPeer(reactor).open(rooms)
            self.addCleanup(peer.abort)
            ack = await peer.request(type="JOIN", room_id="beside-workers")
            self.assertEqual(ack["type"], "ACK", ack)
            peers.append(peer)
        self.assertEqual(
            {p["peer_id"] for p in ack["payload"]["peers"]},
            {p.peer_id for p in peers},
        )
        actor = await SignalingClient.connect(reactor, http)
        self.addCleanup(actor.drop)
        self.assertTrue((await actor.register(REALM)).HasField("success"))
        supervisor.signal(signal.SIGTERM)
        self.assertEqual(await supervisor.ended, 0)
