"""Identity benchmark: KS generate, KS secret, AIS register, validator decryptions.

For each storage backend (SQLite files, and PostgreSQL: a throwaway local
cluster with its default durability, or ``--dsn``), starts ``twistd -n actrix``
(KS + AIS, enable = 24) on a free loopback port with a temp config, drives a
bounded load over keep-alive HTTP/1.1 connections with a minimal client (so the
client costs little next to the server), then measures the in-process
:class:`TokenValidator` (cold key via the daemon's KS over HTTP, cached key,
cached token). Prints a table and one ``RESULT`` line.

Usage: ``.venv/bin/python bench/identity.py [--count N] [--concurrency C]
[--backend sqlite|postgresql|both] [--dsn DSN]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.internet import defer, task
from twisted.internet.protocol import ClientFactory, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actrix.core import tokens  # noqa: E402
from actrix.core.auth import sign_credential  # noqa: E402
from actrix.core.credentials import (  # noqa: E402
    CryptoThreads,
    InlineCrypto,
    TokenValidator,
    measure_decrypt,
)
from actrix.core.interfaces import Claims, KeyRecord, SecretKey  # noqa: E402
from actrix.ks.client import KeyServerClient  # noqa: E402
from actrix.proto import actr_pb2  # noqa: E402

SHARED_KEY = "bench-shared-key-0123456789abcdef"
TIME_LIMIT = 20.0

CONFIG = """
enable = 24
name = "bench"
env = "dev"
location_tag = "bench"
sqlite_path = "{sqlite}"
actrix_shared_key = "{key}"

[bind.http]
domain_name = "localhost"
advertised_ip = "127.0.0.1"
ip = "127.0.0.1"
port = {port}

[bind.ice]
domain_name = "localhost"
ip = "127.0.0.1"
port = 0

[turn]
advertised_ip = "127.0.0.1"
advertised_port = 3478
relay_port_range = "49152-65535"
realm = "bench"

[observability]
filter_level = "warn"

[services.ks]
tolerance_seconds = 3600

[services.ks.storage]
backend = "sqlite"
key_ttl_seconds = 3600

[services.ks.storage.sqlite]

[services.ais.server]
token_ttl_secs = 3600
register_rate_per_second = 1000000.0
register_burst = 1000000
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


DAEMON_PID = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Load:
    """Counts, latencies and a request source shared by the connections."""

    def __init__(self, make: Callable[[], bytes], count: int) -> None:
        self.make = make
        self.remaining = count
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.deadline = time.monotonic() + TIME_LIMIT
        self.done: defer.Deferred[None] = defer.Deferred()
        self.active = 0
        self.server_cpu = 0.0

    def next_request(self) -> bytes | None:
        if self.remaining <= 0 or time.monotonic() > self.deadline:
            return None
        self.remaining -= 1
        return self.make()

    def finished(self) -> None:
        self.active -= 1
        if self.active == 0 and not self.done.called:
            self.done.callback(None)


class KeepAlive(Protocol):
    """One connection sending requests back to back and timing each."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.buffer = b""
        self.started = 0.0

    def connectionMade(self) -> None:
        self.send()

    def send(self) -> None:
        transport = self.transport
        assert transport is not None
        request = self.load.next_request()
        if request is None:
            transport.loseConnection()
            return
        self.started = time.perf_counter()
        transport.write(request)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head.split(" ", 2)[1])
            self.buffer = self.buffer[total:]
            self.load.latencies.append(time.perf_counter() - self.started)
            self.load.statuses[status] = self.load.statuses.get(status, 0) + 1
            self.send()

    def connectionLost(self, reason: Any = None) -> None:
        self.load.finished()


class LoadFactory(ClientFactory):
    def __init__(self, load: Load) -> None:
        self.load = load

    def buildProtocol(self, addr: Any) -> KeepAlive:
        return KeepAlive(self.load)


async def drive(
    reactor: Any, port: int, make: Callable[[], bytes], count: int, concurrency: int
) -> tuple[Load, float]:
    load = Load(make, count)
    load.active = concurrency
    start = time.perf_counter()
    cpu = cpu_seconds(DAEMON_PID)
    for _ in range(concurrency):
        reactor.connectTCP("127.0.0.1", port, LoadFactory(load))
    await load.done
    load.server_cpu = cpu_seconds(DAEMON_PID) - cpu
    return load, time.perf_counter() - start


def http_request(method: str, path: str, body: bytes = b"", ctype: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def summary(
    name: str, n: int, elapsed: float, latencies: list[float], cpu: float = 0.0
) -> dict[str, Any]:
    lat = sorted(latencies) or [0.0]
    return {
        "server_us": cpu / n * 1e6 if n and cpu else 0.0,
        "name": name,
        "n": n,
        "rate": n / elapsed if elapsed > 0 else 0.0,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


async def bench_http(
    reactor: Any, port: int, count: int, conc: int
) -> list[dict[str, Any]]:
    key = SHARED_KEY.encode()
    results = []

    def generate() -> bytes:
        credential = sign_credential(key, "generate_key", time.time())
        body = json.dumps({"credential": credential.to_json()}).encode()
        return http_request("POST", "/ks/generate", body, "application/json")

    load, elapsed = await drive(reactor, port, generate, max(200, count // 4), conc)
    ok = load.statuses.get(200, 0)
    results.append(summary("ks_generate", ok, elapsed, load.latencies, load.server_cpu))
    sequence = itertools.count()

    def secret() -> bytes:
        key_id = 1 + next(sequence) % 10  # ten stored keys, round robin
        credential = sign_credential(key, f"get_secret_key:{key_id}", time.time())
        query = f"key_id={key_id}&credential={quote(credential.to_header(), safe='')}"
        return http_request("GET", f"/ks/secret/{key_id}?{query}")

    load2, elapsed = await drive(reactor, port, secret, count, conc)
    results.append(
        summary(
            "ks_secret",
            load2.statuses.get(200, 0),
            elapsed,
            load2.latencies,
            load2.server_cpu,
        )
    )

    register_body = actr_pb2.RegisterRequest(
        actr_type=actr_pb2.ActrType(manufacturer="acme", name="bench"),
        realm=actr_pb2.Realm(realm_id=1),
    ).SerializeToString()

    def register() -> bytes:
        return http_request(
            "POST", "/ais/register", register_body, "application/octet-stream"
        )

    load3, elapsed = await drive(reactor, port, register, count, conc)
    results.append(
        summary(
            "ais_register",
            load3.statuses.get(200, 0),
            elapsed,
            load3.latencies,
            load3.server_cpu,
        )
    )
    for name, ld in (
        ("ks_generate", load),
        ("ks_secret", load2),
        ("ais_register", load3),
    ):
        bad = {k: v for k, v in ld.statuses.items() if k != 200}
        if bad:
            print(f"{name}: non-200 statuses {bad}")
    return results


class MemoryKeys:
    """A KeyProvider in memory, for the cached-key validator figures."""

    def __init__(self) -> None:
        import coincurve

        secret = coincurve.PrivateKey()
        self.public = secret.public_key.format(compressed=True)
        self.secret = SecretKey(1, secret.secret, 0, 3600)

    async def generate_key(self) -> KeyRecord:
        return KeyRecord(1, self.public, 0, 3600)

    async def secret_key(self, key_id: int) -> SecretKey | None:
        return self.secret if key_id == 1 else None


async def timed_validations(
    validator: TokenValidator, items: list[tuple[bytes, int]], conc: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(items)

    async def worker() -> None:
        while queue:
            token, key_id = queue.pop()
            t0 = time.perf_counter()
            await validator.validate(token, key_id, 1)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(worker()) for _ in range(conc)]
    )
    return time.perf_counter() - start, latencies


async def bench_validator(reactor: Any, port: int, count: int) -> list[dict[str, Any]]:
    results = []
    claims = Claims(1, "1@1/acme:bench", int(time.time()) + 3600, b"\x01" * 32)
    memory = MemoryKeys()
    tokens_list = [
        (tokens.encrypt_token(memory.public, claims), 1) for _ in range(count)
    ]
    runners: list[tuple[str, Any]] = [("inline", InlineCrypto())]
    runners.append(("threads2", CryptoThreads(reactor, threads=2)))
    for label, runner in runners:
        if isinstance(runner, CryptoThreads):
            runner.startService()
        validator = TokenValidator(memory, reactor, crypto=runner)
        await validator.validate(*tokens_list[0], 1)  # warm the key cache
        elapsed, lat = await timed_validations(validator, tokens_list, 16)
        results.append(summary(f"validate_cached_key_{label}", len(lat), elapsed, lat))
        elapsed, lat = await timed_validations(validator, tokens_list, 16)
        results.append(
            summary(f"validate_cached_token_{label}", len(lat), elapsed, lat)
        )
        if isinstance(runner, CryptoThreads):
            await runner.stopService()

    # Cold: every validation needs a key the validator has not seen (KS over HTTP).
    key = SHARED_KEY.encode()
    client = KeyServerClient(f"http://127.0.0.1:{port}", 5.0, key, reactor)
    cold_n = min(300, count)
    records = [await client.generate_key() for _ in range(cold_n)]
    items = [(tokens.encrypt_token(r.public_key, claims), r.key_id) for r in records]
    validator = TokenValidator(client, reactor, crypto=InlineCrypto())
    elapsed, lat = await timed_validations(validator, items, 16)
    results.append(summary("validate_cold_key", len(lat), elapsed, lat))
    await client.stopService()
    return results


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("daemon did not start listening")


def storage_table(dsn: str, prefix: str) -> str:
    """The ``[storage]`` table of a PostgreSQL node (a fresh schema prefix)."""
    return (
        f'\n[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
        f'schema_prefix = "{prefix}"\npool_size = 4\n'
    )


def start_daemon(
    workdir: Path, storage: str, profile: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(
        CONFIG.format(sqlite=workdir / "db", key=SHARED_KEY, port=port) + storage
    )
    twistd = str(Path(sys.executable).parent / "twistd")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            twistd,
            "-n",
            "--pidfile=",
            *(
                ["--profile", profile, "--profiler", "cprofile", "--savestats"]
                if profile
                else []
            ),
            "actrix",
            "-c",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, proc)
    return proc, port


def local_cluster_dsn() -> str:
    """Start a throwaway PostgreSQL (fsync on, as shipped); its DSN."""
    from tests.pgcluster import PgCluster, bin_dir

    bindir = bin_dir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (make tools), or pass --dsn")
    cluster = PgCluster(bindir, durable=True)
    return (
        f"host={cluster.socket_dir} port={cluster.port} user=postgres dbname=postgres"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--profile", help="write a cProfile of the daemon to this file (twistd)"
    )
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument(
        "--dsn", help="PostgreSQL to use (default: start a throwaway local cluster)"
    )
    args = parser.parse_args()
    count = max(100, min(args.count, 50_000))
    conc = max(1, min(args.concurrency, 128))

    workdir = Path(tempfile.mkdtemp(prefix="actrix-bench-"))
    storages = {}
    if args.backend in ("sqlite", "both"):
        storages["sqlite"] = ""
    if args.backend in ("postgresql", "both"):
        dsn = args.dsn or local_cluster_dsn()
        storages["pg"] = storage_table(dsn, f"bench{os.getpid()}_")
    daemons = {}
    rows: list[dict[str, Any]] = []
    try:
        for name, storage in storages.items():
            daemons[name] = start_daemon(workdir / name, storage, args.profile)

        async def run(reactor: Any) -> None:
            global DAEMON_PID
            for name, (proc, port) in daemons.items():
                DAEMON_PID = proc.pid
                found = await bench_http(reactor, port, count, conc)
                found += await bench_validator(reactor, port, count)
                rows.extend({**row, "name": f"{name}_{row['name']}"} for row in found)

        task.react(lambda r: defer.Deferred.fromCoroutine(run(r)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        for proc, _ in daemons.values():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(
        f"{'benchmark':<32}{'n':>8}{'ops/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'daemon CPU us/op':>18}"
    )
    for row in rows:
        print(
            f"{row['name']:<32}{row['n']:>8}{row['rate']:>12.0f}"
            f"{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            + (f"{row['server_us']:>18.0f}" if row["server_us"] else f"{'-':>18}")
        )
    print(f"ECIES decrypt (fastest of 100): {measure_decrypt() * 1e6:.0f} us")
    print(
        "RESULT "
        + " ".join(
            f"{row['name']}_per_s={row['rate']:.0f} "
            f"{row['name']}_p99_ms={row['p99_ms']:.2f}"
            for row in rows
        )
    )


if __name__ == "__main__":
    main()
