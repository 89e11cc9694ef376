"""Redis over TLS (``redis.tls``, ``tls_ca``) against a real TLS redis-server.

The server (Debian's redis-server, built with TLS) listens with TLS only on
its TCP port, with a self-signed certificate for 127.0.0.1; the daemon trusts
it through ``redis.tls_ca``. A certificate the daemon does not trust gives the
outage line with the verification error, and Register gets 503.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from actrix.core.redis_client import RedisClient
from actrix.signaling import messages as m
from tests.certs import write_self_signed
from tests.integration.test_cluster_faults import FaultCase
from tests.integration.test_signaling import sleep
from tests.redisserver import RedisServer


class RedisTlsTests(FaultCase):
    def tls_server(self) -> RedisServer:
        cert, key = write_self_signed(Path(self.mktemp()).resolve())
        server = RedisServer.private(tls=(cert, key))
        self.addCleanup(server.stop)
        return server

    async def test_register_over_tls(self) -> None:
        """With the server's CA the daemon registers over TLS; the entry is there."""
        server = self.tls_server()
        config = server.config()
        port = self.start(config)
        client, ok = await self.register(port, "svc")
        self.assertTrue(ok.HasField("success"), str(ok))
        assert client.actr_id is not None
        body = await self.health(port)
        self.assertEqual(body["cluster"]["redis"], "up")
        reader = RedisClient(config)
        reader.startService()
        self.addCleanup(reader.stopService)
        key = f"{config.key_prefix}a:{ok.success.actr_id.realm.realm_id}:"
        node = await reader.command(
            "HGET", key + str(client.actr_id.serial_number), "node"
        )
        self.assertEqual(bytes(node).decode(), body["cluster"]["node_id"])

    async def test_untrusted_certificate_is_one_line_and_503(self) -> None:
        """A CA that did not sign the server's certificate: refused, said once."""
        server = self.tls_server()
        other, _ = write_self_signed(Path(self.mktemp()).resolve())
        port = self.start(attrs.evolve(server.config(), tls_ca=other))
        for _ in range(50):
            if self.lines("unreachable for"):
                break
            await sleep(0.1)
        _, refused = await self.register(port, "svc")
        self.assertEqual(refused.error.code, 503)
        self.assertEqual(refused.error.message, m.DIRECTORY_UNAVAILABLE)
        lines = self.lines("unreachable for")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("certificate", lines[0].lower())
