"""A throwaway PostgreSQL cluster for the tests: one per trial process, on demand.

The first test that asks starts it (``initdb`` + ``pg_ctl`` of Debian's
``postgresql`` package, in a temp dir, on a free port, unix socket in that dir,
fsync off); later tests of the process reuse it, each in schemas of its own
prefix (:meth:`PgCluster.config`), dropped when the test ends. PostgreSQL
refuses to run as root, so as root it runs as ``nobody``. The server is stopped
by its PID when the process exits.

Without the binaries a test is skipped, except under ``CI=true``, where it
fails: CI installs them (``make tools``).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar, Final
from unittest import SkipTest

import psycopg2
from psycopg2 import sql

from actrix.core.settings import PostgresConfig, Secret

SUPERUSER: Final = "postgres"
# TCP logins need this password (scram); the unix socket trusts.
PASSWORD: Final = "actrix-test-pw"
UNPRIVILEGED: Final = "nobody"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _real_uid() -> int:
    """The real uid, also under fakeroot (which fakes getuid, not /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return os.getuid()


def bin_dir() -> Path | None:
    """Where the newest installed PostgreSQL's ``initdb`` is, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


class PgCluster:
    """A running server; :meth:`get` returns this process's one."""

    _instance: ClassVar[PgCluster | None] = None
    _failure: ClassVar[str | None] = None

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="actrix-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.socket_dir = str(self.root)
        self._prefixes = itertools.count(1)
        # Under fakeroot (a package build) the euid only looks like 0: run the
        # server as the real user, without fakeroot's preload, which would make
        # it look like root to PostgreSQL too.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "FAKEROOTKEY")
        }
        as_root = _real_uid() == 0
        run_as = ["runuser", "-u", UNPRIVILEGED, "--"] if as_root else []
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if as_root:
            shutil.chown(self.root, UNPRIVILEGED)
            shutil.chown(pwfile, UNPRIVILEGED)
        self.root.chmod(0o755)
        subprocess.run(  # noqa: S603  # PostgreSQL binaries, fixed argv
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
            " -c max_connections=300 -c shared_buffers=32MB"
        )
        if not durable:  # tests: nothing here must survive a power cut
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(  # noqa: S603  # PostgreSQL binaries, fixed argv
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-s",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        pidfile = (self.data / "postmaster.pid").read_text()
        self.pid = int(pidfile.splitlines()[0])
        atexit.register(self.stop)

    @classmethod
    def get(cls) -> PgCluster:
        """The process's cluster, started on first use.

        Raises:
            SkipTest: PostgreSQL is not installed (outside CI).
            RuntimeError: it is missing or fails to start under ``CI=true``.
        """
        if cls._instance is not None:
            return cls._instance
        if cls._failure is None:
            bindir = bin_dir()
            if bindir is None:
                cls._failure = "PostgreSQL is not installed (make tools)"
            else:
                try:
                    cls._instance = cls(bindir)
                    return cls._instance
                except (OSError, subprocess.CalledProcessError) as e:
                    detail = getattr(e, "stderr", b"") or b""
                    cls._failure = f"cannot start PostgreSQL: {e} {detail.decode()}"
        if os.environ.get("CI") == "true":
            raise RuntimeError(cls._failure)
        raise SkipTest(cls._failure)

    def stop(self) -> None:
        """Stop the server by its PID (fast shutdown) and delete its files."""
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        else:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

    def config(self, **overrides: object) -> PostgresConfig:
        """Settings for a fresh set of schemas (a prefix no other test uses)."""
        prefix = f"t{os.getpid()}_{next(self._prefixes)}_"
        values: dict[str, object] = {
            "host": self.socket_dir,
            "port": self.port,
            "user": SUPERUSER,
            "dbname": "postgres",
            "schema_prefix": prefix,
            "pool_size": 2,
        }
        values.update(overrides)
        return PostgresConfig(**values)  # type: ignore[arg-type]  # test overrides

    def tcp_config(self, password: str, **overrides: object) -> PostgresConfig:
        """Settings for a TCP login (password checked) with ``password``."""
        return self.config(host="127.0.0.1", password=Secret(password), **overrides)

    def connect(self) -> psycopg2.extensions.connection:
        """A superuser connection on the unix socket (autocommit)."""
        conn: psycopg2.extensions.connection = psycopg2.connect(
            host=self.socket_dir, port=self.port, user=SUPERUSER, dbname="postgres"
        )
        conn.autocommit = True
        return conn

    def drop_schemas(self, prefix: str) -> None:
        """Drop every schema whose name starts with ``prefix``."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                    (prefix,),
                )
                for (name,) in cur.fetchall():
                    cur.execute(
                        sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name))
                    )
        finally:
            conn.close()

    def terminate_backends(self) -> int:
        """Kill every other client's connection (the server stays up)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid != pg_backend_pid() AND backend_type = 'client backend'"
                )
                row = cur.fetchone()
                return int(row[0]) if row else 0
        finally:
            conn.close()


def storage_toml(config: PostgresConfig) -> str:
    """The ``[storage]`` table of a node on the test cluster."""
    return (
        "[storage]\n"
        'backend = "postgresql"\n'
        f'host = "{config.host}"\n'
        f"port = {config.port}\n"
        f'user = "{config.user}"\n'
        f'dbname = "{config.dbname}"\n'
        f'schema_prefix = "{config.schema_prefix}"\n'
        "pool_size = 2\n"
    )
