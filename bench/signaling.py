"""Signaling load benchmark on loopback (bounded).

The daemon (Signaling+AIS+KS, rate limits off) runs in its own process; load
comes from a pool of client processes built on ``tests/signaling_client.py``.

    .venv/bin/python bench/signaling.py [--actors 1000,10000] [--pairs 50]
        [--seconds 5] [--workers 2] [--registrations 2000] [--json out.json]

Reports (a) server RSS per held, registered, heart-beating connection,
(b) relayed messages/s with one-way p50/p99 latency (SessionDescription and
IceCandidate relays between pairs of actors living in the same worker, timed
with the system-wide monotonic clock), (c) registrations/s and
route-candidates/s.
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
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REALM = 101
CONFIG = """
[services.signaling.server]
ws_path = "/signaling"
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

    from actrix.tap import build_root_service
    from tests.daemon import add_realm, http_port, make_settings

    path = Path(directory)
    add_realm(path, REALM)
    settings = make_settings(path, enable=25, overrides=CONFIG)
    root = build_root_service(settings, reactor)
    root.privilegedStartService()
    root.startService()
    print(http_port(root), flush=True)
    reactor.run()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------------------
# Worker processes


def worker(mode: str, port: int, args: dict[str, Any]) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    async def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_register(options: argparse.Namespace) -> dict[str, Any]:
    """(c) registrations/s and route-candidates/s on one fresh daemon."""
    workers = options.workers
    results: dict[str, Any] = {}
    with running_server() as (_server, port):
        per_worker = options.registrations // workers
        out = collect(
            [
                spawn("register", port, count=per_worker, window=32)
                for _ in range(workers)
            ]
        )
        total = sum(r["registrations"] for r in out)
        elapsed = max(r["seconds"] for r in out)
        results["register"] = {
            "registrations": total,
            "per_second": round(total / elapsed),
        }
        print("registrations", results["register"], flush=True)
        out = collect(
            [
                spawn(
                    "routes",
                    port,
                    callers=8,
                    targets=20,
                    seconds=options.seconds,
                    window=2,
                )
                for _ in range(workers)
            ]
        )
        total = sum(r["routes"] for r in out)
        elapsed = max(r["seconds"] for r in out)
        results["routes"] = {"requests": total, "per_second": round(total / elapsed)}
        print("route candidates", results["routes"], flush=True)
    return results


def bench_relay(
    server: subprocess.Popen[str], port: int, options: argparse.Namespace, rate: float
) -> dict[str, Any]:
    """(b) relays between pairs: offered at ``rate`` msg/s, or closed loop if 0."""
    workers = options.workers
    cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
    out = collect(
        [
            spawn(
                "relay",
                port,
                pairs=options.pairs // workers,
                seconds=options.seconds,
                window=options.window,
                rate=rate / workers,
            )
            for _ in range(workers)
        ]
    )
    cpu = cpu_seconds(server.pid) - cpu_before
    wall = time.monotonic() - wall_before
    latencies = [x for r in out for x in r["latencies"]]
    elapsed = max(r["seconds"] for r in out)
    return {
        "pairs": options.pairs // workers * workers,
        "offered_per_second": rate or None,
        "window": None if rate else options.window,
        "messages": len(latencies),
        "lost": sum(r["sent"] for r in out) - len(latencies),
        "per_second": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "server_cpu_percent_of_run": round(100 * cpu / wall),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="hold,register,relay")
    parser.add_argument("--actors", default="1000,10000")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--relay-rate", type=float, default=10000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    parts = set(options.only.split(","))
    results: dict[str, Any] = {}
    if "hold" in parts:
        for count in (int(x) for x in options.actors.split(",") if x):
            with running_server() as (server, port):
                held = bench_hold(server, port, count, options.workers)
            results[f"hold_{count}"] = held
            print("hold", held, flush=True)
    if "register" in parts:
        results.update(bench_register(options))
    if "relay" in parts:
        with running_server() as (server, port):
            for label, rate in (("relay_paced", options.relay_rate), ("relay_max", 0)):
                results[label] = bench_relay(server, port, options, rate)
                print(label, results[label], flush=True)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
