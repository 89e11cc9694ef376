"""Signaling load benchmark on loopback (bounded).

The daemon (Signaling+AIS+KS, rate limits off) runs in its own process; load
comes from a pool of client processes built on ``tests/signaling_client.py``.

    .venv/bin/python bench/signaling.py [--only hold,register,relay]
        [--actors 1000,10000] [--pairs 50] [--relay-rate 10000] [--window 4]
        [--seconds 5] [--workers 2] [--registrations 2000] [--json out.json]

Reports (a) server RSS per held, registered, heart-beating connection,
(b) relayed messages/s with one-way p50/p99 latency (SessionDescription and
IceCandidate relays between pairs of actors living in the same worker, timed
with the system-wide monotonic clock), twice: ``relay_paced`` offers
``--relay-rate`` msg/s in total (open loop, latency at that load) and
``relay_max`` keeps ``--window`` relays in flight per pair (closed loop,
maximum throughput); both also give the server's CPU share. The relay
workers send pre-serialised frames and only count what arrives, so the figures
describe the server. (c) registrations/s and route-candidates/s.
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

    async def main() -> None:
        try:
            result = await MODES[mode](reactor, port, **args)
            print(json.dumps(result), flush=True)
        finally:
            reactor.stop()

    def start() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))

    reactor.callWhenRunning(start)
    reactor.run()


async def _windowed(
    count: int, window: int, job: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Run ``job(i)`` for i < count with at most ``window`` in flight."""
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(window)

    def start(i: int) -> Deferred[None]:
        return Deferred.fromCoroutine(job(i))

    await gatherResults([semaphore.run(start, i) for i in range(count)])


async def hold(reactor: Any, port: int, count: int) -> dict[str, Any]:
    """Register ``count`` actors, ping each, report ready, wait for stdin EOF."""
    from twisted.internet.threads import deferToThread

    from tests.signaling_client import SignalingClient

    clients: list[SignalingClient] = []

    async def one(i: int) -> None:
        client = await SignalingClient.connect(reactor, port)
        response = await client.register(REALM, name="held")
        assert response.HasField("success"), response
        await client.ping()
        clients.append(client)

    await _windowed(count, 64, one)
    print(json.dumps({"ready": len(clients)}), flush=True)
    await deferToThread(sys.stdin.read)
    for client in clients:
        client.drop()
    return {"held": len(clients)}


def _allow(name: str) -> Any:
    from actrix.proto import actr_pb2

    rule = actr_pb2.AclRule(permission=actr_pb2.AclRule.ALLOW)
    rule.principals.add().actr_type.CopyFrom(
        actr_pb2.ActrType(manufacturer="acme", name=name)
    )
    return actr_pb2.Acl(rules=[rule])


async def make_pairs(reactor: Any, port: int, pairs: int) -> list[tuple[Any, Any]]:
    """Register ``pairs`` sender/receiver pairs (receiver allows sender)."""
    from tests.signaling_client import SignalingClient

    made: list[tuple[Any, Any]] = []

    async def one(i: int) -> None:
        receiver = await SignalingClient.connect(reactor, port)
        await receiver.register(REALM, name="receiver", acl=_allow("sender"))
        sender = await SignalingClient.connect(reactor, port)
        await sender.register(REALM, name="sender")
        made.append((sender, receiver))

    await _windowed(pairs, 16, one)
    return made


async def relay(
    reactor: Any, port: int, pairs: int, seconds: float, window: int, rate: float
) -> dict[str, Any]:
    """Pairs of actors relaying SDP/ICE; one-way latency per message.

    ``rate > 0``: open loop, this worker offers ``rate`` relays/s spread over
    its pairs (sent in 2 ms ticks) whatever the server does, so latency is
    measured at that load. ``rate == 0``: closed loop, each sender keeps
    ``window`` relays in flight (a new one leaves when one arrives), which
    measures the server's maximum throughput.
    """
    from relay_links import RelayPair
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall, deferLater

    latencies: list[float] = []
    clients = await make_pairs(reactor, port, pairs)
    links = [RelayPair(sender, receiver, latencies) for sender, receiver in clients]
    # Warm-up, not measured: each sender's first relay costs the server one
    # token decryption; later ones hit its token cache.
    warm: Deferred[None] = Deferred()

    def warmed(pair: RelayPair) -> None:
        if len(latencies) == len(links) and not warm.called:
            warm.callback(None)

    for pair in links:
        pair.on_receive = warmed
        pair.send()
    warm.addTimeout(30, reactor)
    await warm
    latencies.clear()
    await deferLater(reactor, 0.2, lambda: None)
    begin = time.monotonic()
    stop_at = begin + seconds
    drained: Deferred[None] = Deferred()

    def check_drained(pair: RelayPair) -> None:
        if (
            time.monotonic() >= stop_at
            and not drained.called
            and not any(p.outstanding for p in links)
        ):
            drained.callback(None)

    if rate > 0:
        offered = [0]

        def tick() -> None:
            now = time.monotonic()
            if now >= stop_at:
                ticker.stop()
                check_drained(links[0])
                return
            due = int((now - begin) * rate) - offered[0]
            for _ in range(due):
                links[offered[0] % len(links)].send()
                offered[0] += 1

        for pair in links:
            pair.on_receive = check_drained
        ticker = LoopingCall(tick)
        ticker.start(0.002)
    else:

        def again(pair: RelayPair) -> None:
            if time.monotonic() < stop_at:
                pair.send()
            else:
                check_drained(pair)

        for pair in links:
            pair.on_receive = again
            for _ in range(window):
                pair.send()
    drained.addTimeout(seconds + 30, reactor)
    await drained
    elapsed = time.monotonic() - begin
    sent = sum(p.sent for p in links) - len(links)
    for sender, receiver in clients:
        sender.drop()
        receiver.drop()
    return {
        "messages": len(latencies),
        "sent": sent,
        "seconds": elapsed,
        "latencies": latencies,
    }


async def register(reactor: Any, port: int, count: int, window: int) -> dict[str, Any]:
    """``count`` fresh connections each registering once."""
    from tests.signaling_client import SignalingClient

    clients: list[SignalingClient] = []

    async def one(i: int) -> None:
        client = await SignalingClient.connect(reactor, port)
        clients.append(client)

    await _windowed(count, window, one)
    begin = time.monotonic()

    async def reg(i: int) -> None:
        response = await clients[i].register(REALM, name="reg")
        assert response.HasField("success"), response

    await _windowed(count, window, reg)
    elapsed = time.monotonic() - begin
    for client in clients:
        client.drop()
    return {"registrations": count, "seconds": elapsed}


async def routes(
    reactor: Any, port: int, callers: int, targets: int, seconds: float, window: int
) -> dict[str, Any]:
    """Callers asking route candidates for a type with ``targets`` live actors."""
    from actrix.proto import actr_pb2
    from tests.signaling_client import SignalingClient

    held = []
    for _ in range(targets):
        target = await SignalingClient.connect(reactor, port)
        await target.register(REALM, name="routed", acl=_allow("router"))
        await target.ping(power_reserve=0.5)
        held.append(target)
    request = actr_pb2.RouteCandidatesRequest(
        target_type=actr_pb2.ActrType(manufacturer="acme", name="routed"),
        client_fingerprint="",
    )
    request.criteria.candidate_count = 3
    request.criteria.ranking_factors.append(
        actr_pb2.RouteCandidatesRequest.NodeSelectionCriteria.MAXIMUM_POWER_RESERVE
    )
    count = [0]
    clients = []
    for _ in range(callers):
        client = await SignalingClient.connect(reactor, port)
        await client.register(REALM, name="router")
        clients.append(client)
    stop_at = time.monotonic() + seconds

    async def loop(i: int) -> None:
        client = clients[i % callers]
        while time.monotonic() < stop_at:
            reply = await client.call(route_candidates_request=request)
            assert len(reply.route_candidates_response.success.candidates) == min(
                3, targets
            ), reply
            count[0] += 1

    begin = time.monotonic()
    await _windowed(callers * window, callers * window, loop)
    elapsed = time.monotonic() - begin
    for client in clients + held:
        client.drop()
    return {"routes": count[0], "seconds": elapsed}


MODES: dict[str, Any] = {
    "hold": hold,
    "relay": relay,
    "register": register,
    "routes": routes,
}


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
    server: subprocess.Popen[str], port: int, count: int, workers: int
) -> dict[str, Any]:
    base = rss_kb(server.pid)
    procs = [spawn("hold", port, count=count // workers) for _ in range(workers)]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"hold worker failed: {line}")
    time.sleep(2)
    loaded = rss_kb(server.pid)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    collect(procs)
    time.sleep(2)
    held = count // workers * workers
    return {
        "actors": held,
        "rss_base_mb": round(base / 1024, 1),
        "rss_loaded_mb": round(loaded / 1024, 1),
        "rss_per_actor_kb": round((loaded - base) / held, 1),
    }


@contextlib.contextmanager
def running_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A fresh daemon in a temp directory; killed afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", directory],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            yield server, port
        finally:
            server.kill()
            server.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
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
        "server_cpu_percent": round(100 * cpu / wall),
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
    print_summary(results)


def print_summary(results: dict[str, Any]) -> None:
    """The table and the one ``RESULT`` line."""
    rows: list[tuple[str, str, str]] = []
    fields: dict[str, float] = {}
    for name, data in results.items():
        if name.startswith("hold_"):
            rows.append((name, f"{data['rss_per_actor_kb']:.1f} KB/actor", ""))
            fields[f"{name}_kb_per_actor"] = data["rss_per_actor_kb"]
        elif name in ("register", "routes"):
            rows.append((name, f"{data['per_second']:.0f}/s", ""))
            fields[f"{name}_per_s"] = data["per_second"]
        elif name.startswith("relay"):
            latency = f"p50 {data['p50_ms']:.2f} ms, p99 {data['p99_ms']:.2f} ms"
            rows.append((name, f"{data['per_second']:.0f} msg/s", latency))
            fields[f"{name}_per_s"] = data["per_second"]
            fields[f"{name}_p99_ms"] = data["p99_ms"]
            fields[f"{name}_lost"] = data["lost"]
    print(f"{'benchmark':<22}{'result':>20}  latency")
    for name, value, latency in rows:
        print(f"{name:<22}{value:>20}  {latency}")
    print("RESULT " + " ".join(f"{k}={v:g}" for k, v in fields.items()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
