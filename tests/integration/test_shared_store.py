"""Several nodes on one PostgreSQL: replay, keys, realm changes, crashes, outages.

Nodes are real daemons: root services in this process, and ``twistd`` as a
child process where one is killed with SIGKILL. They share the schemas of one
test prefix on the trial process's cluster (:mod:`tests.pgcluster`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import coincurve
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from actrix import cli
from actrix.core import base122
from actrix.core.auth import sign_credential
from actrix.core.config import ENABLE_AIS, ENABLE_KS
from actrix.ks.client import KeyServerClient
from actrix.proto import actr_pb2
from actrix.root import ActrixService
from tests.daemon import (
    SHARED_KEY,
    ProcessOutput,
    config_text,
    http_client,
    http_port,
    make_settings,
    start_daemon,
)
from tests.integration.test_turn_daemon import TurnUdpClient, _error_code
from tests.pgcluster import PgCluster, storage_toml

KEY = SHARED_KEY.encode()
REALM_ID = 1001
TWISTD = str(Path(sys.executable).parent / "twistd")


async def _wait(d: Deferred[Any], seconds: float = 5.0) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


class SharedStoreTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.cluster = PgCluster.get()
        self.pg = self.cluster.config()
        # Registered first, so it runs after every node has stopped.
        self.addCleanup(self.cluster.drop_schemas, self.pg.schema_prefix)
        self.http: Any = http_client(self)

    def node(self, enable: int) -> tuple[ActrixService, str]:
        """A daemon on the shared store; its root service and base URL."""
        settings = make_settings(
            Path(self.mktemp()), enable, overrides=storage_toml(self.pg)
        )
        root = start_daemon(self, settings)
        return root, f"http://127.0.0.1:{http_port(root)}"

    def config_file(self, enable: int, port: int = 0) -> Path:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        text = config_text(directory / "db", enable) + storage_toml(self.pg)
        if port:
            text = text.replace("port = 0\n", f"port = {port}\n", 1)
        path = directory / "actrix.toml"
        path.write_text(text)
        return path

    async def cli(self, *argv: str) -> str:
        """``actrix ...`` in a thread (it blocks on the database)."""
        out, err = io.StringIO(), io.StringIO()
        code = await deferToThread(cli.run, list(argv), out, err)
        self.assertEqual(code, 0, err.getvalue())
        return out.getvalue()

    def keys(self, base: str) -> KeyServerClient:
        client = KeyServerClient(base, 5.0, KEY, reactor)
        self.addCleanup(client.stopService)
        return client

    async def _post_generate(self, base: str, credential: Any) -> int:
        response = await _wait(
            self.http.post(
                f"{base}/ks/generate", json={"credential": credential.to_json()}
            )
        )
        await _wait(response.content())
        return int(response.code)

    async def test_nonce_used_on_one_node_is_refused_on_another(self) -> None:
        """One credential: accepted by node 1, replay refused by node 2."""
        _, one = self.node(ENABLE_KS)
        _, two = self.node(ENABLE_KS)
        credential = sign_credential(KEY, "generate_key", reactor.seconds())
        self.assertEqual(await self._post_generate(one, credential), 200)
        self.assertEqual(await self._post_generate(two, credential), 403)
        response = await _wait(self.http.get(f"{two}/ks/health"))
        health = json.loads(await _wait(response.content()))
        self.assertEqual((health["backend"], health["key_count"]), ("PostgreSQL", 1))

    async def test_key_generated_on_one_node_is_served_by_another(self) -> None:
        """A key pair minted by node 1 is fetched, the same, from node 2."""
        _, one = self.node(ENABLE_KS)
        _, two = self.node(ENABLE_KS)
        record = await _wait(Deferred.fromCoroutine(self.keys(one).generate_key()))
        secret = await _wait(
            Deferred.fromCoroutine(self.keys(two).secret_key(record.key_id))
        )
        assert secret is not None
        public = coincurve.PrivateKey(secret.secret_key).public_key
        self.assertEqual(public.format(compressed=True), record.public_key)

    async def test_realm_suspended_by_cli_is_refused_by_another_node_within_1s(
        self,
    ) -> None:
        """``actrix realm suspend`` with node 1's config stops node 2's TURN in 1 s."""
        config = self.config_file(ENABLE_KS | ENABLE_AIS)
        await self.cli(
            "realm", "add", "-c", str(config), "--id", str(REALM_ID), "--name", "x"
        )
        root, base = self.node(31)  # every service: each store opens on PostgreSQL
        ice = ("127.0.0.1", int(root.listener("ice-udp").bound_port))
        username, password = await self._register(base)
        client = TurnUdpClient(ice, username, password)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")  # type: ignore[attr-defined]  # IReactorUDP
        self.addCleanup(port.stopListening)
        self.assertIsNone(_error_code(await client.allocate()))
        await self.cli("realm", "suspend", "-c", str(config), str(REALM_ID))
        suspended_at = time.monotonic()
        code: int | None = None
        while code is None and time.monotonic() - suspended_at < 3:
            again = TurnUdpClient(ice, username, password)
            again_port = reactor.listenUDP(0, again, interface="127.0.0.1")  # type: ignore[attr-defined]  # IReactorUDP
            self.addCleanup(again_port.stopListening)
            code = _error_code(await again.allocate())
            if code is None:
                await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(code, 401)
        self.assertLess(time.monotonic() - suspended_at, 1.0)

    async def _register(self, base: str) -> tuple[str, str]:
        request = actr_pb2.RegisterRequest(
            actr_type=actr_pb2.ActrType(manufacturer="acme", name="shared"),
            realm=actr_pb2.Realm(realm_id=REALM_ID),
        )
        response = await _wait(
            self.http.post(
                f"{base}/ais/register",
                data=request.SerializeToString(),
                headers={b"content-type": [b"application/octet-stream"]},
            )
        )
        self.assertEqual(response.code, 200)
        ok = actr_pb2.RegisterResponse.FromString(
            await _wait(response.content())
        ).success
        raw = (
            REALM_ID.to_bytes(4, "big")
            + ok.credential.token_key_id.to_bytes(4, "big")
            + ok.credential.encrypted_token
        )
        return base122.encode(raw), ok.psk.hex()

    async def test_lost_database_answers_503_then_recovers(self) -> None:
        """Killed connections: requests fail with 503 and a reason, then succeed."""
        _, base = self.node(ENABLE_KS)
        keys = self.keys(base)
        await _wait(Deferred.fromCoroutine(keys.generate_key()))
        self.assertGreater(self.cluster.terminate_backends(), 0)
        codes = []
        for _ in range(6):
            credential = sign_credential(KEY, "generate_key", reactor.seconds())
            response = await _wait(
                self.http.post(
                    f"{base}/ks/generate", json={"credential": credential.to_json()}
                )
            )
            body = await _wait(response.content())
            codes.append(int(response.code))
            if response.code == 200:
                break
            self.assertIn(b"cannot be reached", body)
        self.assertIn(503, codes)
        self.assertEqual(codes[-1], 200)
        self.assertEqual(set(codes), {200, 503})

    async def _spawn(self, config: Path) -> tuple[ProcessOutput, Any]:
        proto = ProcessOutput()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).parents[2])
        transport = reactor.spawnProcess(
            proto,
            TWISTD,
            [TWISTD, "--nodaemon", "--pidfile=", "actrix", "-c", str(config)],
            env=env,
            path=str(config.parent),
        )
        return proto, transport

    async def test_kill_9_during_writes_loses_no_acknowledged_key(self) -> None:
        """Every key a twistd node acknowledged before SIGKILL is on another node."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        proto, transport = await self._spawn(self.config_file(ENABLE_KS, port))
        self.addCleanup(lambda: proto.ended)
        victim = self.keys(f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                await _wait(Deferred.fromCoroutine(victim.generate_key()))
                break
            except Exception:
                await deferLater(reactor, 0.05, lambda: None)
        acknowledged: list[Any] = []

        async def writer() -> None:
            while True:
                try:
                    acknowledged.append(await victim.generate_key())
                except Exception:
                    return

        writers = [Deferred.fromCoroutine(writer()) for _ in range(8)]
        while len(acknowledged) < 40:
            await deferLater(reactor, 0.01, lambda: None)
        transport.signalProcess(signal.SIGKILL)
        self.assertEqual(await _wait(proto.ended, 10), -signal.SIGKILL)
        for d in writers:
            await _wait(d, 10)
        _, survivor = self.node(ENABLE_KS)
        keys = self.keys(survivor)
        for record in acknowledged:
            secret = await _wait(Deferred.fromCoroutine(keys.secret_key(record.key_id)))
            assert secret is not None, record.key_id
            public = coincurve.PrivateKey(secret.secret_key).public_key
            self.assertEqual(public.format(compressed=True), record.public_key)

    async def test_unreachable_database_at_start_is_one_line(self) -> None:
        """twistd with no server behind storage exits non-zero with one line."""
        config = self.config_file(ENABLE_KS)
        config.write_text(
            config.read_text()
            .replace(f"port = {self.pg.port}\n", "port = 1\n")
            .replace(f'host = "{self.pg.host}"', 'host = "127.0.0.1"')
        )
        proto, _ = await self._spawn(config)
        code = await _wait(proto.ended, 20)
        output = proto.output.decode(errors="replace")
        self.assertNotEqual(code, 0)
        self.assertIn("actrix: storage.dsn: cannot connect to PostgreSQL", output)
        self.assertNotIn("Traceback", output)
