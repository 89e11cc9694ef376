"""``actrix check --runtime`` asks the configured Redis (a real redis-server)."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import attrs
from twisted.trial.unittest import TestCase

from actrix.cli import run
from actrix.core.redis_probe import MAX_REPLY_BYTES, redis_problem
from actrix.core.settings import RedisConfig, Secret
from tests.daemon import config_text
from tests.redisserver import RedisServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProbeTests(TestCase):
    def test_a_running_server_answers(self) -> None:
        """TCP and unix socket: no problem."""
        server = RedisServer.get()
        self.assertIsNone(redis_problem(server.config()))
        self.assertIsNone(redis_problem(server.config(unix=True)))

    def test_wrong_password_is_named_without_the_password(self) -> None:
        """A wrong password: 'refused AUTH', and the password is not in the text."""
        server = RedisServer.private(password="right-password")
        self.addCleanup(server.stop)
        self.assertIsNone(redis_problem(server.config()))
        wrong = attrs.evolve(server.config(), password=Secret("wrong-password"))
        problem = redis_problem(wrong) or ""
        self.assertIn("refused AUTH", problem)
        self.assertNotIn("wrong-password", problem)

    def test_missing_password_and_bad_database(self) -> None:
        """No password where one is required, or a database out of range."""
        server = RedisServer.private(password="right-password")
        self.addCleanup(server.stop)
        anonymous = attrs.evolve(server.config(), password=None)
        self.assertIn("refused SELECT", redis_problem(anonymous) or "")
        far = attrs.evolve(server.config(), db=100000)
        self.assertIn("refused SELECT", redis_problem(far) or "")

    def test_nothing_listening(self) -> None:
        """A closed port: 'cannot connect' naming the address."""
        port = _free_port()
        config = RedisConfig(host="127.0.0.1", port=port, connect_timeout=2.0)
        problem = redis_problem(config) or ""
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", problem)

    def test_a_server_that_floods_or_stalls(self) -> None:
        """Bytes past the bound, or silence past the reply timeout: one line."""
        for behaviour, expected in (
            ("flood", f"more than {MAX_REPLY_BYTES} bytes"),
            ("stall", "did not answer"),
        ):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            self.addCleanup(listener.close)
            port = listener.getsockname()[1]

            def serve(
                behaviour: str = behaviour, listener: socket.socket = listener
            ) -> None:
                conn, _ = listener.accept()
                with conn:
                    if behaviour == "flood":
                        # One endless bulk string: never a complete reply.
                        conn.sendall(b"$999999999\r\n")
                        try:
                            while True:
                                conn.sendall(b"x" * 65536)
                        except OSError:
                            return
                    conn.recv(1024)
                    threading.Event().wait(3.0)

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            config = RedisConfig(
                host="127.0.0.1", port=port, connect_timeout=2.0, reply_timeout=1.0
            )
            problem = redis_problem(config) or ""
            self.assertIn("did not answer", problem)
            self.assertIn(expected, problem)

    def test_check_runtime_reports_it(self) -> None:
        """``actrix check --runtime`` exits 1 with the Redis line; 0 when it answers."""
        server = RedisServer.private(password="right-password")
        self.addCleanup(server.stop)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        for password, status in (("right-password", 0), ("wrong-password", 1)):
            config = tmp / f"{password}.toml"
            config.write_text(
                config_text(tmp, enable=25)
                + f'\n[redis]\nhost = "127.0.0.1"\nport = {server.port}\n'
                + f'password = "{password}"\n'
            )
            out, err = io.StringIO(), io.StringIO()
            code = run(["check", "--runtime", "-c", str(config)], out, err)
            self.assertEqual(code, status, out.getvalue() + err.getvalue())
            if status:
                self.assertIn("error: redis:", out.getvalue())
                self.assertNotIn(password, out.getvalue())
