"""The whole daemon: in-process start/stop on port 0, and twistd as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from actrix.core.listen import ListenError
from actrix.tap import build_root_service
from tests.daemon import (
    ProcessOutput,
    config_text,
    http_client,
    http_port,
    make_settings,
    start_daemon,
    wait_healthy,
)

TWISTD = str(Path(sys.executable).parent / "twistd")


class InProcessDaemonTests(TestCase):
    timeout = 20

    async def test_health_and_clean_stop(self) -> None:
        """The daemon answers /health on port 0 and stops with a clean reactor."""
        root = start_daemon(self, make_settings(Path(self.mktemp())))
        port = http_port(root)
        await wait_healthy(self, root)
        response = await http_client(self).get(f"http://127.0.0.1:{port}/health")
        self.assertEqual(response.code, 200)
        body = json.loads(await response.content())
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["name"], "actrix-test")
        self.assertIn("ks", body["services"])
        self.assertIn("uptime_seconds", body)
        missing = await http_client(self).get(f"http://127.0.0.1:{port}/nothing-here")
        self.assertEqual(missing.code, 404)
        await missing.content()

    async def test_oversize_body_is_refused(self) -> None:
        """A request body over the cap gets 413 and the daemon keeps serving."""
        root = start_daemon(self, make_settings(Path(self.mktemp())))
        port = http_port(root)
        response = await http_client(self).post(
            f"http://127.0.0.1:{port}/health", data=b"x" * (2 * 1024 * 1024)
        )
        self.assertEqual(response.code, 413)
        await response.content()
        again = await http_client(self).get(f"http://127.0.0.1:{port}/health")
        self.assertEqual(again.code, 200)
        await again.content()

    def test_port_in_use_aborts_startup(self) -> None:
        """Binding a port that is taken raises ListenError naming the address."""
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        taken = blocker.getsockname()[1]
        settings = make_settings(
            Path(self.mktemp()), overrides=f"[bind.http]\nport = {taken}"
        )
        root = build_root_service(settings, reactor)
        with self.assertRaises(ListenError) as cm:
            root.privilegedStartService()
        self.assertIn(f"127.0.0.1:{taken}", str(cm.exception))
        for db in root.databases:
            db.close()
        for listener in root.listeners:
            port = getattr(listener, "port", None)
            if port is not None:
                port.stopListening()


def _spawn(args: list[str], cwd: Path) -> tuple[ProcessOutput, Any]:
    proto = ProcessOutput()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    transport = reactor.spawnProcess(
        proto,
        TWISTD,
        [TWISTD, "--nodaemon", "--pidfile=", *args],
        env=env,
        path=str(cwd),
    )
    return proto, transport


class TwistdProcessTests(TestCase):
    timeout = 40

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()

    def write_config(self, text: str) -> Path:
        path = self.dir / "actrix.toml"
        path.write_text(text)
        return path

    async def run_twistd(self, config: Path) -> tuple[int, str]:
        proto, _ = _spawn(["actrix", "-c", str(config)], self.dir)
        code = await proto.ended
        return code, proto.output.decode(errors="replace")

    async def test_bad_config_exits_non_zero_naming_the_key(self) -> None:
        """twistd refuses a bad config with the dotted key and creates no files."""
        db = self.dir / "db"
        config = self.write_config(
            config_text(db).replace(
                'advertised_ip = "127.0.0.1"\nadvertised_port',
                'advertised_ip = "nope"\nadvertised_port',
            )
        )
        code, output = await self.run_twistd(config)
        self.assertNotEqual(code, 0)
        self.assertIn("turn.advertised_ip: not an IP address", output)
        self.assertFalse(db.exists())

    async def test_missing_tls_files_exit_non_zero(self) -> None:
        """A missing certificate stops startup with a message naming the file."""
        db = self.dir / "db"
        text = config_text(db).replace('env = "dev"', 'env = "test"') + (
            "\n[bind.https]\ndomain_name = 'x'\nadvertised_ip = '127.0.0.1'\n"
            "ip = '127.0.0.1'\nport = 0\ncert = '/nonexistent/cert.pem'\n"
            "key = '/nonexistent/key.pem'\n"
        )
        code, output = await self.run_twistd(self.write_config(text))
        self.assertNotEqual(code, 0)
        self.assertIn("/nonexistent/cert.pem", output)

    async def test_example_shared_key_refused_outside_dev(self) -> None:
        """The shipped placeholder shared key stops a non-dev daemon."""
        from actrix.core.settings import EXAMPLE_SHARED_KEY
        from tests.certs import write_self_signed
        from tests.daemon import SHARED_KEY

        cert, key = write_self_signed(self.dir / "tls")
        text = (
            config_text(self.dir / "db")
            .replace('env = "dev"', 'env = "test"')
            .replace(SHARED_KEY, EXAMPLE_SHARED_KEY)
        ) + (
            "\n[bind.https]\ndomain_name = 'x'\nadvertised_ip = '127.0.0.1'\n"
            f"ip = '127.0.0.1'\nport = 0\ncert = '{cert}'\nkey = '{key}'\n"
        )
        code, output = await self.run_twistd(self.write_config(text))
        self.assertNotEqual(code, 0)
        self.assertIn("actrix_shared_key is still the example value", output)
        self.assertFalse((self.dir / "db").exists())

    async def test_port_in_use_exits_with_one_line(self) -> None:
        """A taken HTTP port ends twistd with status 1 and one message."""
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        taken = blocker.getsockname()[1]
        text = config_text(self.dir / "db").replace(
            "port = 0\n", f"port = {taken}\n", 1
        )
        code, output = await self.run_twistd(self.write_config(text))
        self.assertEqual(code, 1)
        self.assertIn(f"cannot listen on 127.0.0.1:{taken}", output)
        self.assertNotIn("Traceback", output)

    async def test_sigterm_stops_cleanly(self) -> None:
        """SIGTERM stops a running daemon with status 0 within 5 seconds."""
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        text = config_text(self.dir / "db").replace("port = 0\n", f"port = {port}\n", 1)
        proto, transport = _spawn(
            ["actrix", "-c", str(self.write_config(text))], self.dir
        )
        for _ in range(100):
            try:
                response = await http_client(self).get(
                    f"http://127.0.0.1:{port}/health"
                )
                await response.content()
                break
            except Exception:
                await deferLater(reactor, 0.1, lambda: None)
        else:
            transport.signalProcess("KILL")
            await proto.ended
            self.fail("daemon did not come up: " + proto.output.decode())
        started = reactor.seconds()
        transport.signalProcess(signal.SIGTERM)
        code = await proto.ended
        self.assertEqual(code, 0, proto.output.decode())
        self.assertLess(reactor.seconds() - started, 5.0)
        self.assertIn(b"actrix stopped", proto.output)


class TwistdSighupTests(TestCase):
    timeout = 40

    async def test_sighup_reloads_certificate_in_running_twistd(self) -> None:
        """SIGHUP makes a running twistd serve a replaced certificate."""
        import ssl

        from twisted.internet.threads import deferToThread

        from tests.certs import write_self_signed

        tmp = Path(self.mktemp()).resolve()
        cert, key = write_self_signed(tmp / "tls", "first.test")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        text = config_text(tmp / "db").replace('env = "dev"', 'env = "test"') + (
            "\n[bind.https]\ndomain_name = 'localhost'\nadvertised_ip = '127.0.0.1'\n"
            f"ip = '127.0.0.1'\nport = {port}\ncert = '{cert}'\nkey = '{key}'\n"
        )
        config = tmp / "actrix.toml"
        config.write_text(text)
        proto, transport = _spawn(["actrix", "-c", str(config)], tmp)
        self.addCleanup(lambda: proto.ended)
        self.addCleanup(transport.signalProcess, "TERM")

        def fetch() -> str:
            return ssl.get_server_certificate(("127.0.0.1", port))

        for _ in range(100):
            try:
                first = await deferToThread(fetch)
                break
            except OSError:
                await deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail("daemon did not come up: " + proto.output.decode())
        write_self_signed(tmp / "tls", "second.test")
        transport.signalProcess(signal.SIGHUP)
        for _ in range(50):
            second = await deferToThread(fetch)
            if second != first:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(second.strip(), cert.read_text().strip())
        self.assertIn(b"TLS certificate reloaded", proto.output)
