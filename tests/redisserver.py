"""A throwaway ``redis-server`` for the tests: one per trial process, on demand.

The first test that asks starts Debian's ``redis-server`` in a temp dir, on a
free port of 127.0.0.1 and a unix socket in that dir, with persistence off
(``--save ''``, no AOF); later tests of the process reuse it, each under a key
prefix of its own (:meth:`RedisServer.config`). The server is stopped by its
PID when the process exits.

Without the binary a test is skipped, except under ``CI=true``, where it
fails: CI installs it (``make tools``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar
from unittest import SkipTest

from actrix.core.settings import RedisConfig, Secret

START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A running server; :meth:`get` returns this process's one."""

    _instance: ClassVar[RedisServer | None] = None
    _failure: ClassVar[str | None] = None

    def __init__(
        self,
        binary: str,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="actrix-redis-"))
        self.port = _free_port()
        self.socket_path = str(self.root / "redis.sock")
        self.password = password
        # (certificate, key): TCP is TLS only (the unix socket stays plain).
        self.tls = tls
        self._prefixes = itertools.count(1)
        self._binary = binary
        atexit.register(self.stop)
        self.start()

    def start(self) -> None:
        """Start the server process (again, after :meth:`halt`: same port)."""
        argv = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.root / "server.log"),
        ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if self.tls is not None:
            cert, key = self.tls
            argv[argv.index("--port") + 1] = "0"
            argv += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(cert),
                "--tls-auth-clients",
                "no",
            ]
        self._process = subprocess.Popen(  # noqa: S603  # fixed argv
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self._process.pid
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"redis-server did not start (port {self.port})")
            time.sleep(0.02)

    def halt(self) -> None:
        """Stop the server process by its PID (its data is lost: no persistence)."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            if self.tls is None:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
            else:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(0.5)
                    s.connect(self.socket_path)
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    @classmethod
    def get(cls) -> RedisServer:
        """The process's server, started on first use.

        Raises:
            SkipTest: redis-server is not installed (outside CI).
            RuntimeError: it is missing or fails to start under ``CI=true``.
        """
        if cls._instance is not None:
            return cls._instance
        if cls._failure is None:
            binary = shutil.which("redis-server") or (
                "/usr/bin/redis-server"
                if Path("/usr/bin/redis-server").exists()
                else None
            )
            if binary is None:
                cls._failure = "redis-server is not installed (make tools)"
            else:
                try:
                    cls._instance = cls(binary)
                    return cls._instance
                except OSError as e:
                    cls._failure = f"cannot start redis-server: {e}"
        if os.environ.get("CI") == "true":
            raise RuntimeError(cls._failure)
        raise SkipTest(cls._failure)

    def stop(self) -> None:
        """Stop the server by its PID and delete its files."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def private(
        cls, password: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> RedisServer:
        """A server of the calling test's own (it may stop it); stop it at cleanup.

        Raises:
            SkipTest: as :meth:`get`.
        """
        shared = cls.get()
        return cls(shared._binary, password, tls)

    def config(self, *, unix: bool = False, **overrides: object) -> RedisConfig:
        """Settings for a fresh key prefix (no other test uses it)."""
        prefix = f"t{os.getpid()}-{next(self._prefixes)}:"
        values: dict[str, object] = {
            "host": self.socket_path if unix else "127.0.0.1",
            "port": self.port,
            "key_prefix": prefix,
        }
        if self.password is not None:
            values["password"] = Secret(self.password)
        if self.tls is not None and not unix:
            values["tls"] = True
            values["tls_ca"] = self.tls[0]
        values.update(overrides)
        return RedisConfig(**values)  # type: ignore[arg-type]  # test overrides
