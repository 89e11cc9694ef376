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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
    reactor.run()  # type: ignore[attr-defined]


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
            reactor.stop()  # type: ignore[attr-defined]

    def start() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


async def _windowed(count: int, window: int, job: Any) -> None:
    """Run ``job(i)`` for i < count with at most ``window`` in flight."""
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(window)
    await gatherResults(
        [
            semaphore.run(lambda i=i: Deferred.fromCoroutine(job(i)))
            for i in range(count)
        ]
    )


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


async def relay(
    reactor: Any, port: int, pairs: int, seconds: float, window: int
) -> dict[str, Any]:
    """Pairs of actors relaying SDP/ICE; one-way latency per message.

    Each sender keeps ``window`` relays in flight: a new one leaves when the
    receiver (same process) gets one. Relays arrive in order per pair, so the
    oldest outstanding send time belongs to the message that just arrived.
    """
    from collections import deque

    from twisted.internet.defer import Deferred, gatherResults

    from actrix.proto import webrtc_pb2
    from tests.signaling_client import SignalingClient

    latencies: list[float] = []
    waiting: list[Deferred[None]] = []
    window_end = [0.0]

    async def all_ready() -> None:
        d: Deferred[None] = Deferred()
        waiting.append(d)
        if len(waiting) == pairs:
            window_end[0] = time.monotonic() + seconds
            for waiter in waiting:
                waiter.callback(None)
        await d

    async def run_pair(i: int) -> None:
        receiver = await SignalingClient.connect(reactor, port)
        await receiver.register(REALM, name="receiver", acl=_allow("sender"))
        sender = await SignalingClient.connect(reactor, port)
        await sender.register(REALM, name="sender")
        assert receiver.actr_id is not None
        target = receiver.actr_id
        finished: Deferred[None] = Deferred()
        outstanding: deque[float] = deque()
        counter = [0]

        def send_one() -> None:
            counter[0] += 1
            envelope, body = sender.relay_envelope(target)
            if counter[0] % 4 == 0:
                body.session_description.CopyFrom(
                    webrtc_pb2.SessionDescription(
                        type=webrtc_pb2.SessionDescription.OFFER, sdp="v=0 " * 40
                    )
                )
            else:
                body.ice_candidate.candidate = (
                    f"candidate:{counter[0]} 1 udp 2122260223 10.0.0.1 5000 typ host"
                )
            outstanding.append(time.monotonic())
            sender.send(envelope)

        def receive(payload: bytes, is_binary: bool) -> None:
            now = time.monotonic()
            latencies.append(now - outstanding.popleft())
            if now < window_end[0]:
                send_one()
            elif not outstanding and not finished.called:
                finished.callback(None)

        receiver._received = receive  # type: ignore[method-assign]  # bench fast path
        await all_ready()
        for _ in range(window):
            send_one()
        await finished
        receiver.drop()
        sender.drop()

    await gatherResults([Deferred.fromCoroutine(run_pair(i)) for i in range(pairs)])
    elapsed = time.monotonic() - (window_end[0] - seconds)
    return {"messages": len(latencies), "seconds": elapsed, "latencies": latencies}


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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actors", default="1000,10000")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    results: dict[str, Any] = {}
    workers = options.workers
    for count in (int(x) for x in options.actors.split(",") if x):
        with running_server() as (server, port):
            results[f"hold_{count}"] = bench_hold(server, port, count, workers)
        print("hold", results[f"hold_{count}"], flush=True)
    with running_server() as (server, port):
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
    with running_server() as (server, port):
        out = collect(
            [
                spawn(
                    "relay",
                    port,
                    pairs=options.pairs // workers,
                    seconds=options.seconds,
                    window=options.window,
                )
                for _ in range(workers)
            ]
        )
        latencies = [x for r in out for x in r["latencies"]]
        elapsed = max(r["seconds"] for r in out)
        results["relay"] = {
            "pairs": options.pairs,
            "window": options.window,
            "messages": len(latencies),
            "per_second": round(len(latencies) / elapsed),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        }
        print("relay", results["relay"], flush=True)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
