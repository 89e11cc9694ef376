"""Signaling load benchmark on loopback (bounded): actrix against a minimal relay.

Two servers run side by side, each in its own process on 127.0.0.1, under
the same load generator (client processes built on ``tests/signaling_client.py``):
actrix (Signaling+AIS+KS, rate limits off) and a minimal Twisted/Autobahn relay
(:func:`serve_minimal`, ~40 lines: binary frames go to the paired connection, or
back to the sender when it has no pair). Every figure is also printed as the
ratio actrix / minimal measured in the same run, because this box is shared and
absolute figures vary by tens of per cent between runs.

    .venv/bin/python bench/signaling.py [--only hold,cycle,relay,health]
        [--actors 10000] [--pairs 500] [--relay-rate 5000] [--window 4]
        [--seconds 2.5] [--max-runs 3] [--paced-runs 3] [--paced-seconds 2]
        [--paced-pairs 100] [--workers 2]
        [--cycle-rate 1000]
        [--kinds minimal,actrix] [--json out.json]

Measures (server CPU from /proc/PID/stat, RSS from /proc/PID/status):
(a) ``hold``: RSS per idle connection with ``--actors`` connected; for actrix
each one is a registered actor that pinged once. (b) ``cycle``: closed-loop
connect + register + one message + close cycles (the minimal relay: connect,
one echoed message, close), cycles/s and server CPU per cycle. (c) ``relay``:
SessionDescription/IceCandidate relays of the same size (the minimal relay gets
the same frames, with a token of a real token's length) between ``--pairs``
pairs, closed loop with ``--window`` in flight per pair (msgs/s, server CPU per
message; ``--max-runs`` runs alternating between the servers, medians) and
open loop at ``--relay-rate`` msg/s in total over ``--paced-pairs`` pairs (p99
one-way latency; ``--paced-runs`` runs alternating between the servers, the
median p99 of each).
(d) ``health``: actrix only, ``GET /health`` probed every 10 ms while
registrations arrive at ``--cycle-rate``/s (each a new connection from a raw
client that sends the upgrade, then a Register, and drops the socket on the
answer); p99 latency, and server CPU per connect + register at that rate.
Every phase is bounded by a count and a time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signaling_load import REALM, worker  # noqa: E402  # after the path setup

# Rate limits off; a 1 s reconnect window, so the actors of one phase leave
# during the next phase's set-up instead of in its measured part.
CONFIG = """
[bind.http]
max_connections_per_ip = 65535
[services.signaling.server]
ws_path = "/signaling"
reconnect_window_secs = 1
[services.signaling.server.rate_limit.connection]
enabled = false
[services.signaling.server.rate_limit.message]
enabled = false
[services.ais.server]
register_rate_per_second = 100000.0
register_burst = 100000
"""


# ---------------------------------------------------------------------------
# Server process


def serve(directory: str) -> None:
    """Run the daemon until stdin closes; print the port first."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from actrix.core.logging import json_observer
    from actrix.tap import build_root_service
    from tests.daemon import add_realm, http_port, make_settings

    # Log as the packaged daemon does (JSON lines at info), into /dev/null: the
    # cost of formatting is real, and nothing piles up in the startup buffer.
    devnull = open(os.devnull, "w")  # noqa: SIM115  # lives as long as the process
    globalLogBeginner.beginLoggingTo([json_observer(devnull)], redirectStandardIO=False)

    path = Path(directory)
    add_realm(path, REALM)
    settings = make_settings(path, enable=25, overrides=CONFIG)
    root = build_root_service(settings, reactor)
    root.privilegedStartService()
    root.startService()
    print(http_port(root), flush=True)
    reactor.callWhenRunning(root.settle_heap)  # as makeService does
    # ACTRIX_BENCH_PROFILE=FILE: cProfile the server; stats written on SIGTERM.
    profile_to = os.environ.get("ACTRIX_BENCH_PROFILE")
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        reactor.run()
        profiler.disable()
        profiler.dump_stats(profile_to)
    else:
        reactor.run()


def serve_minimal() -> None:
    """The minimal relay: pair by ``?pair=ID``, relay binary frames, nothing else.

    Runs until killed; prints its port first. An unpaired connection gets its
    own frames back (the cycle benchmark's one message).
    """
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from twisted.internet import reactor

    waiting: dict[str, Any] = {}

    class Relay(WebSocketServerProtocol):
        other: Any = None
        pair = ""

        def connectionMade(self) -> None:
            super().connectionMade()
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]

        def onConnect(self, request: Any) -> None:
            pair = request.params.get("pair")
            if pair:
                self.pair = pair[0]
                other = waiting.pop(self.pair, None)
                if other is None:
                    waiting[self.pair] = self
                else:
                    self.other, other.other = other, self

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            (self.other or self).sendMessage(payload, isBinary)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if waiting.get(self.pair) is self:
                del waiting[self.pair]
            if self.other is not None:
                self.other.other = None
                self.other = None

    factory = WebSocketServerFactory()
    factory.protocol = Relay
    factory.setProtocolOptions(autoPingInterval=0, maxMessagePayloadSize=65536)
    port = reactor.listenTCP(0, factory, backlog=1024, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------------------
# Orchestration


def spawn(mode: str, port: int, **args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", mode, str(port), json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=600)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"worker failed ({proc.returncode}): {out[-500:]}")
        results.append(json.loads(lines[-1]))
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def bench_hold(
    servers: dict[str, tuple[subprocess.Popen[str], int]], count: int, workers: int
) -> dict[str, dict[str, Any]]:
    """(a) RSS per idle connection with ``count`` connected, every server at once."""
    time.sleep(1.0)  # settle_heap's collection
    base = {kind: rss_kb(server.pid) for kind, (server, _) in servers.items()}
    procs = {
        kind: [
            spawn("hold", port, count=count // workers, kind=kind)
            for _ in range(workers)
        ]
        for kind, (_, port) in servers.items()
    }
    for group in procs.values():
        for proc in group:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("{"):
                raise RuntimeError(f"hold worker failed: {line}")
    time.sleep(2)
    loaded = {kind: rss_kb(server.pid) for kind, (server, _) in servers.items()}
    for group in procs.values():
        for proc in group:
            assert proc.stdin is not None
            proc.stdin.close()
        collect(group)
    held = count // workers * workers
    return {
        kind: {
            "connections": held,
            "rss_base_mb": round(base[kind] / 1024, 1),
            "rss_loaded_mb": round(loaded[kind] / 1024, 1),
            "kb_per_connection": round((loaded[kind] - base[kind]) / held, 2),
        }
        for kind in servers
    }


@contextlib.contextmanager
def running_server(kind: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A fresh server (actrix in a temp directory, or the minimal relay)."""
    with tempfile.TemporaryDirectory() as directory:
        command = ["--serve", directory] if kind == "actrix" else ["--serve-minimal"]
        server = subprocess.Popen(
            [sys.executable, __file__, *command],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            yield server, port
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live children.

    actrix seals identity tokens in a child process: its CPU is the server's.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return total


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux ``/proc``)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    return found


def probe_health(port: int, until: float) -> list[float]:
    """``GET /health`` every 10 ms on a fresh connection; latencies in seconds."""
    import http.client

    latencies: list[float] = []
    while time.monotonic() < until:
        begin = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.monotonic() - begin)
        except OSError:
            latencies.append(5.0)
        finally:
            conn.close()
        time.sleep(max(0.0, 0.01 - (time.monotonic() - begin)))
    return latencies


def bench_cycle(
    server: subprocess.Popen[str],
    port: int,
    options: argparse.Namespace,
    kind: str,
    rate: float = 0.0,
) -> dict[str, Any]:
    """(b) closed-loop connect + register + 1 message + close cycles, or (d)
    with ``rate``: raw registrations arriving at that rate while ``/health``
    is probed."""
    workers = options.workers
    cpu_before = cpu_seconds(server.pid)
    limit = int(max(rate, 4000) * options.seconds / workers)
    if rate:
        procs = [
            spawn(
                "arrivals",
                port,
                seconds=options.seconds,
                rate=rate / workers,
                limit=limit,
            )
            for _ in range(workers)
        ]
    else:
        procs = [
            spawn(
                "cycle",
                port,
                kind=kind,
                seconds=options.seconds,
                window=16,
                rate=0.0,
                limit=limit,
            )
            for _ in range(workers)
        ]
    health: list[float] = []
    if rate:
        time.sleep(1.0)  # the workers' start-up
        health = probe_health(port, time.monotonic() + options.seconds - 0.5)
    out = collect(procs)
    cpu = cpu_seconds(server.pid) - cpu_before
    cycles = sum(r["cycles"] for r in out)
    elapsed = max(r["seconds"] for r in out)
    result: dict[str, Any] = {
        "cycles": cycles,
        "failed": sum(r["failed"] for r in out),
        "per_second": round(cycles / elapsed),
        "cpu_ms_per_cycle": round(1000 * cpu / max(cycles, 1), 3),
    }
    if health:
        result["health_probes"] = len(health)
        result["health_p99_ms"] = round(percentile(health, 99) * 1000, 2)
    return result


def bench_relay(
    server: subprocess.Popen[str],
    port: int,
    options: argparse.Namespace,
    rate: float,
    kind: str,
    seconds: float | None = None,
) -> dict[str, Any]:
    """(c) relays between pairs: offered at ``rate`` msg/s, or closed loop if 0."""
    workers = options.workers
    procs = [
        spawn(
            "relay",
            port,
            pairs=(options.paced_pairs if rate else options.pairs) // workers,
            seconds=seconds or options.seconds,
            window=options.window,
            rate=rate / workers,
            kind=kind,
        )
        for _ in range(workers)
    ]
    # Server CPU over the measured part only: each worker reports when its
    # pairs are made and warm, and all start together on "go".
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith('{"warm"'):
            raise RuntimeError(f"relay worker failed: {line}")
    cpu_before = cpu_seconds(server.pid)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    out = collect(procs)
    cpu = cpu_seconds(server.pid) - cpu_before
    latencies = [x for r in out for x in r["latencies"]]
    elapsed = max(r["seconds"] for r in out)
    messages = len(latencies)
    return {
        "pairs": (options.paced_pairs if rate else options.pairs) // workers * workers,
        "offered_per_second": rate or None,
        "messages": messages,
        "lost": sum(r["sent"] for r in out) - messages,
        "per_second": round(messages / elapsed),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "cpu_us_per_message": round(1e6 * cpu / max(messages, 1), 1),
    }


KINDS = ("minimal", "actrix")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="hold,cycle,relay,health")
    parser.add_argument("--actors", type=int, default=10000)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--relay-rate", type=float, default=5000.0)
    parser.add_argument("--cycle-rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--max-runs", type=int, default=3)
    parser.add_argument("--paced-runs", type=int, default=3)
    parser.add_argument("--paced-seconds", type=float, default=2.0)
    parser.add_argument("--paced-pairs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default=",".join(KINDS), help="servers to run")
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    kinds = [kind for kind in KINDS if kind in options.kinds.split(",")]
    parts = set(options.only.split(","))
    results: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

    def note(kind: str, part: str, value: dict[str, Any]) -> None:
        results[kind][part] = value
        print(kind, part, value, flush=True)

    # Both servers run side by side; each phase measures them one after the
    # other, and the relay phases alternate them several times (medians), so
    # load from elsewhere on this shared box hits both alike.
    if "hold" in parts:
        # Fresh servers afterwards: 10 000 departing actors are not the
        # other phases' business.
        with contextlib.ExitStack() as stack:
            servers = {
                kind: stack.enter_context(running_server(kind)) for kind in kinds
            }
            for kind, held in bench_hold(
                servers, options.actors, options.workers
            ).items():
                note(kind, "hold", held)
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(running_server(kind)) for kind in kinds}
        for kind, (server, port) in servers.items():
            if "cycle" in parts:
                note(kind, "cycle", bench_cycle(server, port, options, kind))
        if "relay" in parts:
            for label, rate, runs, seconds, keys in (
                (
                    "relay_max",
                    0.0,
                    options.max_runs,
                    options.seconds,
                    ("per_second", "cpu_us_per_message"),
                ),
                (
                    "relay_paced",
                    options.relay_rate,
                    options.paced_runs,
                    options.paced_seconds,
                    ("p99_ms",),
                ),
            ):
                measured: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
                for _ in range(runs):
                    for kind, (server, port) in servers.items():
                        run = bench_relay(server, port, options, rate, kind, seconds)
                        print(kind, label, "run", run, flush=True)
                        measured[kind].append(run)
                for kind, results_of_kind in measured.items():
                    summary = dict(results_of_kind[-1])
                    for key in keys:
                        values = [r[key] for r in results_of_kind]
                        summary[key] = median(values)
                        summary[f"{key}_runs"] = values
                    summary["lost"] = sum(r["lost"] for r in results_of_kind)
                    note(kind, label, summary)
        if "health" in parts and "actrix" in servers:
            server, port = servers["actrix"]
            note(
                "actrix",
                "health",
                bench_cycle(server, port, options, "actrix", options.cycle_rate),
            )
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))
    print_summary(results, options)


def print_summary(
    results: dict[str, dict[str, Any]], options: argparse.Namespace
) -> None:
    """The table (minimal, actrix, ratio, target) and the one ``RESULT`` line."""
    mini, ours = results["minimal"], results["actrix"]
    rows: list[tuple[str, str, float | None, float | None, float | None, str]] = []
    fields: dict[str, float] = {}

    def row(
        name: str, label: str, part: str, key: str, target: str, fmt: str = "{:.2f}"
    ) -> None:
        a = mini.get(part, {}).get(key)
        b = ours.get(part, {}).get(key)
        ratio = b / a if a and b is not None else None
        rows.append((name, label, a, b, ratio, target))
        if b is not None:
            fields[f"actrix_{name}"] = b
        if a is not None:
            fields[f"minimal_{name}"] = a
        if ratio is not None:
            fields[f"ratio_{name}"] = round(ratio, 3)

    row(
        "kb_per_idle",
        f"KB per idle connection ({options.actors} connected)",
        "hold",
        "kb_per_connection",
        "actrix ≤ 9 KB",
    )
    row("cycles_per_s", "connect+register+msg+close /s", "cycle", "per_second", "")
    row(
        "cycle_cpu_ms",
        "  server CPU per cycle, ms",
        "cycle",
        "cpu_ms_per_cycle",
        "actrix ≤ 0.6 ms",
    )
    row(
        "relay_msgs_per_s",
        f"relayed msgs/s ({options.pairs} pairs)",
        "relay_max",
        "per_second",
        "ratio ≥ 1.0",
    )
    row(
        "relay_cpu_us",
        "  server CPU per message, µs",
        "relay_max",
        "cpu_us_per_message",
        "ratio ≤ 1.0",
    )
    row(
        "paced_p99_ms",
        f"p99 at {options.relay_rate:.0f} msgs/s ({options.paced_pairs} pairs), ms",
        "relay_paced",
        "p99_ms",
        "ratio ≤ 1.0",
    )
    row(
        "health_p99_ms",
        f"/health p99 at {options.cycle_rate:.0f} registrations/s, ms",
        "health",
        "health_p99_ms",
        "actrix < 50 ms",
    )
    row(
        "paced_cycle_cpu_ms",
        f"  server CPU per connect+register at {options.cycle_rate:.0f}/s, ms",
        "health",
        "cpu_ms_per_cycle",
        "actrix ≤ 0.6 ms",
    )
    for kind, data in results.items():
        for part in ("relay_max", "relay_paced"):
            if part in data:
                fields[f"{kind}_{part}_lost"] = data[part]["lost"]
        for part in ("cycle", "health"):
            if part in data:
                fields[f"{kind}_{part}_failed"] = data[part]["failed"]

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    print(f"{'measure':<48}{'minimal':>12}{'actrix':>12}{'ratio':>8}  target")
    for _, label, a, b, ratio, target in rows:
        print(f"{label:<48}{show(a):>12}{show(b):>12}{show(ratio):>8}  {target}")
    print("RESULT " + " ".join(f"{k}={v:g}" for k, v in fields.items()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-minimal":
        serve_minimal()
    else:
        main()
