"""Operations: /metrics protection and format, SIGHUP certificate reload, status."""

from __future__ import annotations

import io
import ssl
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from actrix.cli import run
from tests.certs import write_self_signed
from tests.daemon import (
    http_client,
    http_port,
    make_settings,
    start_daemon,
    wait_healthy,
)

TOKEN = "metrics-token-0123456789"


def _https_overrides(cert: Path, key: Path) -> str:
    return (
        'env = "test"\n[bind.https]\ndomain_name = "localhost"\n'
        'advertised_ip = "127.0.0.1"\nip = "127.0.0.1"\nport = 0\n'
        f'cert = "{cert}"\nkey = "{key}"\n'
    )


class MetricsTests(TestCase):
    timeout = 20

    async def test_metrics_parse_and_require_token(self) -> None:
        """/metrics needs the bearer token and parses as Prometheus text."""
        root = start_daemon(
            self,
            make_settings(
                Path(self.mktemp()),
                overrides=f'[observability.metrics]\ntoken = "{TOKEN}"',
            ),
        )
        url = f"http://127.0.0.1:{http_port(root)}/metrics"
        client = http_client(self)
        denied = await client.get(url)
        self.assertEqual(denied.code, 401)
        await denied.content()
        wrong = await client.get(
            url, headers=Headers({"Authorization": ["Bearer nope"]})
        )
        self.assertEqual(wrong.code, 401)
        await wrong.content()
        ok = await client.get(
            url, headers=Headers({"Authorization": [f"Bearer {TOKEN}"]})
        )
        self.assertEqual(ok.code, 200)
        text = (await ok.content()).decode()
        names = {family.name for family in text_string_to_metric_families(text)}
        self.assertIn("process_resident_memory_bytes", names)

    async def test_metrics_allow_list(self) -> None:
        """A client outside the allow-list gets 403."""
        root = start_daemon(
            self,
            make_settings(
                Path(self.mktemp()),
                overrides='[observability.metrics]\nallow = ["10.0.0.0/8"]',
            ),
        )
        response = await http_client(self).get(
            f"http://127.0.0.1:{http_port(root)}/metrics"
        )
        self.assertEqual(response.code, 403)
        await response.content()


class ReloadTests(TestCase):
    timeout = 20

    async def test_sighup_reload_serves_new_certificate(self) -> None:
        """After reload a new TLS client sees the replaced certificate."""
        tmp = Path(self.mktemp())
        cert, key = write_self_signed(tmp / "tls", "first.test")
        root = start_daemon(
            self, make_settings(tmp / "db", overrides=_https_overrides(cert, key))
        )
        port = http_port(root)
        before = await deferToThread(ssl.get_server_certificate, ("127.0.0.1", port))
        self.assertEqual(before.strip(), cert.read_text().strip())
        write_self_signed(tmp / "tls", "second.test")
        root.reload()
        after = await deferToThread(ssl.get_server_certificate, ("127.0.0.1", port))
        self.assertEqual(after.strip(), cert.read_text().strip())
        self.assertNotEqual(before, after)

    async def test_unreadable_certificate_keeps_the_old_one(self) -> None:
        """A broken file on reload logs an error and keeps serving the old cert."""
        tmp = Path(self.mktemp())
        cert, key = write_self_signed(tmp / "tls")
        good = cert.read_text()
        root = start_daemon(
            self, make_settings(tmp / "db", overrides=_https_overrides(cert, key))
        )
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        cert.write_text("not a certificate")
        root.reload()
        self.assertTrue(
            any("TLS reload failed" in str(e.get("log_format")) for e in events)
        )
        served = await deferToThread(
            ssl.get_server_certificate, ("127.0.0.1", http_port(root))
        )
        self.assertEqual(served.strip(), good.strip())

    async def test_tls_1_1_refused(self) -> None:
        """The HTTPS listener does not negotiate TLS below 1.2."""
        tmp = Path(self.mktemp())
        cert, key = write_self_signed(tmp / "tls")
        root = start_daemon(
            self, make_settings(tmp / "db", overrides=_https_overrides(cert, key))
        )
        port = http_port(root)

        def handshake() -> str:
            import socket

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                try:
                    with ctx.wrap_socket(raw) as tls:
                        return str(tls.version())
                except (ssl.SSLError, OSError) as e:
                    return "refused: " + type(e).__name__

        result = await deferToThread(handshake)
        self.assertTrue(result.startswith("refused"), result)


class StatusTests(TestCase):
    timeout = 20

    async def test_status_reads_health(self) -> None:
        """actrix status prints the running daemon's health and exits 0."""
        root = start_daemon(self, make_settings(Path(self.mktemp())))
        await wait_healthy(self, root)
        out, err = io.StringIO(), io.StringIO()
        url = f"http://127.0.0.1:{http_port(root)}"
        code = await deferToThread(run, ["status", "--url", url], out, err)
        self.assertEqual(code, 0, err.getvalue())
        self.assertIn("actrix-test: ok", out.getvalue())


def _samples(text: str) -> dict[str, float]:
    """Every sample of a text exposition keyed by name and sorted labels."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


class IdentityMetricsTests(TestCase):
    timeout = 30

    async def test_ks_and_ais_counters_move(self) -> None:
        """Generating a key and registering an actor move the KS and AIS counters."""
        import json as json_module

        from twisted.internet import reactor

        from actrix.core.auth import sign_credential
        from actrix.proto import actr_pb2
        from tests.daemon import SHARED_KEY, add_realm

        tmp = Path(self.mktemp())
        add_realm(tmp, 1001)
        root = start_daemon(self, make_settings(tmp))
        await wait_healthy(self, root)
        base = f"http://127.0.0.1:{http_port(root)}"
        client = http_client(self)

        async def scrape() -> dict[str, float]:
            response = await client.get(base + "/metrics")
            return _samples((await response.content()).decode())

        before = await scrape()
        credential = sign_credential(
            SHARED_KEY.encode(), "generate_key", reactor.seconds()
        )
        response = await client.post(
            base + "/ks/generate",
            data=json_module.dumps({"credential": credential.to_json()}).encode(),
            headers=Headers({"Content-Type": ["application/json"]}),
        )
        self.assertEqual(response.code, 200)
        await response.content()
        request = actr_pb2.RegisterRequest(
            actr_type=actr_pb2.ActrType(manufacturer="acme", name="echo"),
            realm=actr_pb2.Realm(realm_id=1001),
        )
        response = await client.post(
            base + "/ais/register", data=request.SerializeToString()
        )
        self.assertEqual(response.code, 200)
        reply = actr_pb2.RegisterResponse.FromString(await response.content())
        self.assertEqual(reply.WhichOneof("result"), "success")
        after = await scrape()

        def grew(prefix: str) -> bool:
            names = [k for k in after if k.startswith(prefix)]
            return any(after[k] > before.get(k, 0.0) for k in names)

        self.assertTrue(grew("actrix_ks_keys_generated_total"))
        self.assertTrue(grew("actrix_ks_requests_total"))
        self.assertTrue(grew("actrix_ais_registrations_total"))
        self.assertTrue(grew("actrix_ks_keys{"))


class ReloadKeepsSessionsTests(TestCase):
    timeout = 30

    async def test_reload_keeps_websocket_sessions(self) -> None:
        """A registered actor's WebSocket survives a reload and still gets pongs."""
        from twisted.internet import reactor

        from tests.daemon import add_realm
        from tests.signaling_client import SignalingClient

        tmp = Path(self.mktemp())
        add_realm(tmp, 101)
        root = start_daemon(self, make_settings(tmp, enable=25))
        client = await SignalingClient.connect(reactor, http_port(root))
        self.addCleanup(client.drop)
        response = await client.register(101)
        self.assertTrue(response.HasField("success"), str(response))
        root.reload()
        reply = await client.ping()
        self.assertTrue(reply.HasField("pong"), str(reply))
