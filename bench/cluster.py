"""Cluster benchmark on loopback (bounded): one process, ``workers = 2``, two nodes.

Three deployments of the same daemon (Signaling+AIS+KS, rate limits off), each
started as the operator would, with ``twistd actrix -c FILE``, run one after
another under the same load as ``bench/signaling.py`` (its load workers):

* ``one``: one process, the embedded default (no Redis);
* ``workers2``: ``[cluster] workers = 2`` on one redis-server: a supervisor
  owns the port, two worker processes accept from it;
* ``nodes2``: two daemons on two ports sharing the SQLite files and one
  redis-server; every pair's receiver is on node 1 and its sender on node 2,
  so every relay crosses nodes through Redis.

The bench starts its own ``redis-server`` (temp dir, free port) and stops it.

    .venv/bin/python bench/cluster.py [--pairs 200] [--window 4] [--seconds 3]
        [--runs 3] [--rate 2000] [--paced-pairs 100] [--actors 4000]
        [--load-workers 2] [--only cycle,relay,paced,hold] [--json out.json]

Measures: registrations/s (closed-loop connect + register + 1 message +
close), relays/s closed loop with ``--window`` in flight per pair (p50/p99;
``--runs`` runs, alternating deployments, medians), one-way relay latency
p50/p99 open loop at ``--rate`` relays/s (the cross-node cost is nodes2 minus
one), messages lost, RSS per registered actor (all server processes; Redis's
own memory apart). Server CPU is summed over every server process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from signaling import (  # noqa: E402  # after the path setup
    CONFIG,
    collect,
    cpu_seconds,
    median,
    percentile,
    rss_kb,
    spawn,
)
from signaling_load import REALM  # noqa: E402

TWISTD = os.environ.get(
    "ACTRIX_BENCH_TWISTD", str(Path(sys.executable).parent / "twistd")
)
DEPLOYMENTS = ("one", "workers2", "nodes2")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a supervisor's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


class Deployment:
    """Config files and twistd processes of one deployment."""

    def __init__(self, name: str, directory: Path, redis: Any) -> None:
        from tests.daemon import config_text

        self.name = name
        self.redis_pid = None if redis is None else int(redis.pid)
        self.processes: list[subprocess.Popen[bytes]] = []
        count = 2 if name == "nodes2" else 1
        self.ports = [free_port() for _ in range(count)]
        self.configs = []
        db = directory / "db"
        for i, port in enumerate(self.ports):
            extra = CONFIG
            if redis is not None:
                extra += (
                    f'[redis]\nhost = "127.0.0.1"\nport = {redis.port}\n'
                    f'key_prefix = "{name}:"\n'
                    f'[cluster]\nnode_id = "{name}-{i}"\n'
                )
                if name == "workers2":
                    extra += "workers = 2\n"
            text = config_text(db, 25, "").replace("port = 0\n", f"port = {port}\n", 1)
            path = directory / f"{name}-{i}.toml"
            path.write_text(_merge_toml(text, extra))
            self.configs.append(path)

    def start(self) -> None:
        from actrix import cli

        out, err = io.StringIO(), io.StringIO()
        argv = ["realm", "add", "-c", str(self.configs[0]), "--id", str(REALM)]
        if cli.run([*argv, "--name", "bench"], out, err) != 0:
            raise RuntimeError(err.getvalue())
        # ACTRIX_BENCH_PROFILE=DIR: twistd's cProfile of each daemon (not of
        # a supervisor's workers), stats saved on SIGTERM.
        profile_dir = os.environ.get("ACTRIX_BENCH_PROFILE")
        for config in self.configs:
            profile = (
                [
                    f"--profile={profile_dir}/{config.stem}.prof",
                    "--profiler=cprofile",
                    "--savestats",
                ]
                if profile_dir
                else []
            )
            self.processes.append(
                subprocess.Popen(  # fixed argv
                    [
                        TWISTD,
                        "--nodaemon",
                        "--pidfile=",
                        *profile,
                        "--logger",
                        "actrix.core.logging.json_observer",
                        "actrix",
                        "-c",
                        str(config),
                    ],
                    stdout=subprocess.DEVNULL,
                    cwd=ROOT,
                )
            )
            self._wait_healthy(self.ports[len(self.processes) - 1])
        if self.name == "workers2":
            deadline = time.monotonic() + 60
            while len(self.server_pids()) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # the second worker's start-up
        time.sleep(1.5)  # settle_heap's collection, first beats

    def _wait_healthy(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/health"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: port {port} never answered /health")

    def server_pids(self) -> list[int]:
        pids = []
        for process in self.processes:
            pids.append(process.pid)
            pids.extend(children(process.pid))
        return pids

    def cpu(self) -> float:
        # cpu_seconds counts a process's live descendants (workers, sealing
        # children) already: sum over the processes started here only.
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def cpu_split(self) -> list[float]:
        """CPU seconds so far of each process serving traffic (workers, nodes)."""
        serving: list[int] = []
        for process in self.processes:
            if self.name == "workers2":
                serving.extend(children(process.pid))
            else:
                serving.append(process.pid)
        return [cpu_seconds(pid) for pid in sorted(serving)]

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.server_pids())

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
            if process.returncode != 0:
                print(f"{self.name}: exit status {process.returncode}", flush=True)


def _merge_toml(text: str, extra: str) -> str:
    """Append ``extra`` tables; its [bind.http] and [services.*] keys join the base."""
    import tomllib

    def merge(base: dict[str, Any], more: dict[str, Any]) -> None:
        for key, value in more.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value

    data = tomllib.loads(text)
    merge(data, tomllib.loads(extra))
    return _dump(data)


def _dump(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text of nested tables of scalars (what config_text produces)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    text = ""
    if lines or (prefix and not tables):
        text += (f"[{prefix}]\n" if prefix else "") + "".join(f"{x}\n" for x in lines)
    for key, value in tables:
        text += _dump(value, f"{prefix}.{key}" if prefix else key)
    return text


@contextlib.contextmanager
def running(name: str, redis: Any) -> Iterator[Deployment]:
    with tempfile.TemporaryDirectory() as directory:
        deployment = Deployment(name, Path(directory), redis)
        deployment.start()
        try:
            yield deployment
        finally:
            deployment.stop()


def ports_for(deployment: Deployment, i: int) -> tuple[int, int | None]:
    """(receiver port, sender port) of load worker ``i``: across nodes for nodes2."""
    if deployment.name == "nodes2":
        return deployment.ports[0], deployment.ports[1]
    return deployment.ports[0], None


def bench_relay(
    deployment: Deployment, options: argparse.Namespace, rate: float
) -> dict[str, Any]:
    workers = options.load_workers
    pairs = options.paced_pairs if rate else options.pairs
    seconds = options.paced_seconds if rate else options.seconds
    procs = []
    for i in range(workers):
        port, sender_port = ports_for(deployment, i)
        procs.append(
            spawn(
                "relay",
                port,
                pairs=pairs // workers,
                seconds=seconds,
                window=options.window,
                rate=rate / workers,
                kind="actrix",
                sender_port=sender_port,
                settle=0.0 if deployment.name == "one" else 1.5,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith('{"warm"'):
            raise RuntimeError(f"relay worker failed: {line}")
    cpu_before = deployment.cpu()
    split_before = deployment.cpu_split()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    out = collect(procs)
    cpu = deployment.cpu() - cpu_before
    split = [
        round(after - before, 2)
        for before, after in zip(split_before, deployment.cpu_split(), strict=True)
    ]
    latencies = [x for r in out for x in r["latencies"]]
    elapsed = max(r["seconds"] for r in out)
    return {
        "messages": len(latencies),
        "lost": sum(r["sent"] for r in out) - len(latencies),
        "per_second": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "cpu_us_per_message": round(1e6 * cpu / max(len(latencies), 1), 1),
        "cpu_seconds_per_process": split,
    }


def bench_cycle(deployment: Deployment, options: argparse.Namespace) -> dict[str, Any]:
    workers = options.load_workers
    limit = int(4000 * options.seconds / workers)
    procs = [
        spawn(
            "cycle",
            deployment.ports[i % len(deployment.ports)],
            kind="actrix",
            seconds=options.seconds,
            window=16,
            rate=0.0,
            limit=limit,
        )
        for i in range(workers)
    ]
    out = collect(procs)
    cycles = sum(r["cycles"] for r in out)
    elapsed = max(r["seconds"] for r in out)
    return {
        "cycles": cycles,
        "failed": sum(r["failed"] for r in out),
        "per_second": round(cycles / elapsed),
    }


def bench_hold(deployment: Deployment, options: argparse.Namespace) -> dict[str, Any]:
    workers = options.load_workers
    base = deployment.rss_kb()
    redis_pid = deployment.redis_pid
    redis_base = 0 if redis_pid is None else rss_kb(redis_pid)
    procs = [
        spawn(
            "hold",
            deployment.ports[i % len(deployment.ports)],
            count=options.actors // workers,
            kind="actrix",
        )
        for i in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"hold worker failed: {line}")
    time.sleep(2)
    loaded = deployment.rss_kb()
    redis_loaded = 0 if redis_pid is None else rss_kb(redis_pid)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    collect(procs)
    held = options.actors // workers * workers
    return {
        "actors": held,
        "kb_per_actor": round((loaded - base) / held, 2),
        "redis_kb_per_actor": None
        if redis_pid is None
        else round((redis_loaded - redis_base) / held, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="cycle,relay,paced,hold")
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS))
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--paced-pairs", type=int, default=100)
    parser.add_argument("--paced-seconds", type=float, default=3.0)
    parser.add_argument("--actors", type=int, default=4000)
    parser.add_argument("--load-workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    names = [n for n in DEPLOYMENTS if n in options.deployments.split(",")]
    parts = set(options.only.split(","))
    import shutil

    from tests.redisserver import RedisServer

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis = RedisServer(binary)
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"relay": [], "paced": []} for name in names
    }
    load_before = os.getloadavg()
    try:
        with contextlib.ExitStack() as stack:
            deployments = {
                name: stack.enter_context(
                    running(name, None if name == "one" else redis)
                )
                for name in names
            }
            for name, deployment in deployments.items():
                if "cycle" in parts:
                    results[name]["cycle"] = bench_cycle(deployment, options)
                    print(name, "cycle", results[name]["cycle"], flush=True)
            # Alternate the deployments run by run: load from elsewhere on the
            # box then hits all of them alike.
            for _ in range(options.runs):
                for part, rate in (("relay", 0.0), ("paced", options.rate)):
                    if part not in parts:
                        continue
                    for name, deployment in deployments.items():
                        run = bench_relay(deployment, options, rate)
                        print(name, part, run, flush=True)
                        runs[name][part].append(run)
            for name, deployment in deployments.items():
                if "hold" in parts:
                    results[name]["hold"] = bench_hold(deployment, options)
                    print(name, "hold", results[name]["hold"], flush=True)
    finally:
        redis.stop()
    for name in names:
        for part, measured in runs[name].items():
            if measured:
                results[name][part] = {
                    key: median([r[key] for r in measured])
                    for key in ("per_second", "p50_ms", "p99_ms", "cpu_us_per_message")
                } | {"lost": sum(r["lost"] for r in measured)}
    load_after = os.getloadavg()
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))
    print_summary(results, load_before[0], load_after[0])


def print_summary(
    results: dict[str, dict[str, Any]], load_before: float, load_after: float
) -> None:
    def get(name: str, part: str, key: str) -> float | None:
        value = results.get(name, {}).get(part, {}).get(key)
        return None if value is None else float(value)

    rows = [
        ("registrations/s (connect+register+1 msg+close)", "cycle", "per_second"),
        ("relays/s, closed loop", "relay", "per_second"),
        ("  p50 ms", "relay", "p50_ms"),
        ("  p99 ms", "relay", "p99_ms"),
        ("  server CPU per relay, us", "relay", "cpu_us_per_message"),
        ("paced relay p50 ms", "paced", "p50_ms"),
        ("paced relay p99 ms", "paced", "p99_ms"),
        ("RSS per actor, KB (all server processes)", "hold", "kb_per_actor"),
        ("  redis-server memory per actor, KB", "hold", "redis_kb_per_actor"),
    ]

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    print(f"\n{'measure':<48}" + "".join(f"{n:>12}" for n in DEPLOYMENTS))
    for label, part, key in rows:
        cells = "".join(f"{show(get(n, part, key)):>12}" for n in DEPLOYMENTS)
        print(f"{label:<48}{cells}")
    fields: dict[str, float] = {}
    one, two = get("one", "relay", "per_second"), get("workers2", "relay", "per_second")
    if one and two:
        fields["workers2_relay_ratio"] = round(two / one, 3)
    p99_one, p99_two = get("one", "relay", "p99_ms"), get("workers2", "relay", "p99_ms")
    if p99_one and p99_two:
        fields["workers2_p99_ratio"] = round(p99_two / p99_one, 3)
    p50_one, p50_cross = get("one", "paced", "p50_ms"), get("nodes2", "paced", "p50_ms")
    if p50_one is not None and p50_cross is not None:
        fields["cross_node_added_p50_ms"] = round(p50_cross - p50_one, 3)
    p99_cross = get("nodes2", "paced", "p99_ms")
    if p99_cross is not None:
        fields["cross_node_p99_ms"] = p99_cross
    for name in results:
        for part in ("relay", "paced"):
            lost = get(name, part, "lost")
            if lost is not None:
                fields[f"{name}_{part}_lost"] = lost
        for key in ("cycle",):
            rate = get(name, key, "per_second")
            if rate is not None:
                fields[f"{name}_registrations_per_second"] = rate
    fields["loadavg_before"] = round(load_before, 2)
    fields["loadavg_after"] = round(load_after, 2)
    print("targets: workers2_relay_ratio >= 1.3 at workers2_p99_ratio <= 1;")
    print("         cross_node_added_p50_ms <= 1; every *_lost = 0")
    print("RESULT " + " ".join(f"{k}={v:g}" for k, v in fields.items()), flush=True)


if __name__ == "__main__":
    main()
