"""Rooms load benchmark on loopback (bounded): joins, fan-out, relays.

The daemon (rooms only, anonymous dev joins, limits raised, the startup heap
frozen as ``makeService`` does) runs in its own process; the load comes from
client processes of lean ``/rooms/ws`` peers (:class:`RawPeer`: frames built and
parsed by hand so that the clients stay cheaper than the server).

    .venv/bin/python bench/rooms.py [--peers 1000] [--seconds 3] [--workers 2]
        [--pairs 40] [--paced-rate 5000] [--paced-workers 1] [--window 8]
        [--repeat 1] [--only join,fanout,paced,max] [--json out.json]

Reports (a) rooms of 2, 10 and 50 peers: a join storm of ``--peers``
connections (joins/s, p50/p99 JOIN→ACK), (b) PEER_JOINED fan-out in a 50-peer
room (JOIN sent → last member told, p50/p99), (c) relayed OFFER/CANDIDATE
between pairs: paced at ``--paced-rate`` msg/s in total (open loop, one-way
p50/p99) and closed loop with ``--window`` in flight per pair (max msgs/s).
Latencies are taken with the system-wide monotonic clock by the process that
both sent and received. The paced run comes from one client process (on 2
cores, every extra process is one more waiting for a time slice on each
message) and records how late its own 1 ms timer fires: the box's scheduling
noise, next to which its p99 must be read (see ``QUIET_TIMER_MS``). With
``--repeat N`` each relay run is repeated; RESULT gives the median, the range
and the run on the quietest box. Every relay run is followed by the same run
against ``bench/rooms_reference.py``, a bare forwarder with no WebSocket library,
JSON or rooms (``ref_*``): the floor the box and Twisted leave in the same
minutes. Ends with one ``RESULT name=value ...`` line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rooms_peer import RawPeer  # noqa: E402  # after the path setup

CONFIG = """
[services.rooms]
allow_anonymous = true
default_max_peers = 0
max_connections = 100000
max_connections_per_ip = 100000
message_rate = 1000000.0
message_burst = 1000000
ping_interval = 0
"""


def serve(directory: str) -> None:
    """Run the daemon until killed; print the HTTP port first."""
    from twisted.internet import reactor

    from actrix.tap import build_root_service
    from tests.daemon import http_port, make_settings

    settings = make_settings(
        Path(directory),
        enable=32,
        extra=CONFIG,
        overrides="[bind.http]\nmax_connections_per_ip = 65535\n",
    )
    root = build_root_service(settings, reactor)
    root.privilegedStartService()
    root.startService()
    # As makeService does: without it every full collection walks the ~100 000
    # startup objects (tens of ms with the reactor stalled, a fake relay p99).
    reactor.callWhenRunning(root.settle_heap)
    reactor.callWhenRunning(print, http_port(root), flush=True)
    profile = os.environ.get("ROOMS_BENCH_PROFILE")
    if not profile:
        reactor.run()
        return
    import cProfile
    import signal

    profiler = cProfile.Profile()
    signal.signal(signal.SIGTERM, lambda *_: reactor.stop())
    profiler.runcall(reactor.run)
    profiler.dump_stats(profile)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# ---------------------------------------------------------------------------
# Client work (runs in worker processes, each with its own reactor)


def _run(coro_fn: Any, *args: Any) -> Any:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    out: dict[str, Any] = {}

    async def main() -> None:
        try:
            out["result"] = await coro_fn(reactor, *args)
        except BaseException as e:
            out["error"] = repr(e)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
    reactor.run()
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["result"]


async def _open_peers(reactor: Any, port: int, count: int) -> list[Any]:
    from twisted.internet.defer import Deferred, gatherResults

    peers: list[Any] = []
    for start in range(0, count, 100):
        batch = [RawPeer(reactor) for _ in range(min(100, count - start))]
        await gatherResults([Deferred.fromCoroutine(p.open(port)) for p in batch])
        peers.extend(batch)
    return peers


async def join_storm(reactor: Any, port: int, count: int, size: int, tag: str) -> Any:
    """``count`` peers join rooms of ``size`` at once: (elapsed, latencies)."""
    from twisted.internet.defer import Deferred, gatherResults

    peers = await _open_peers(reactor, port, count)
    latencies: list[float] = []

    async def join(i: int, peer: Any) -> None:
        start = time.monotonic()
        ack = await peer.request(type="JOIN", room_id=f"{tag}-{i // size}")
        assert ack["type"] == "ACK", ack
        latencies.append(time.monotonic() - start)

    began = time.monotonic()
    await gatherResults(
        [Deferred.fromCoroutine(join(i, p)) for i, p in enumerate(peers)]
    )
    elapsed = time.monotonic() - began
    for peer in peers:
        peer.abort()
    return elapsed, latencies


async def fan_out(reactor: Any, port: int, rounds: int) -> list[float]:
    """JOIN of the 50th peer → all 49 members got PEER_JOINED, ``rounds`` times."""
    from twisted.internet.defer import Deferred, gatherResults

    members = await _open_peers(reactor, port, 49)
    for m in members:
        await m.request(type="JOIN", room_id="fan")
    joiner = (await _open_peers(reactor, port, 1))[0]
    samples: list[float] = []
    for _ in range(rounds):
        for m in members:
            m.frames.clear()
        waits = [Deferred.fromCoroutine(m.of_type("PEER_JOINED")) for m in members]
        start = time.monotonic()
        joiner.send(type="JOIN", room_id="fan")
        await gatherResults(waits)
        samples.append(time.monotonic() - start)
        await joiner.request(type="LEAVE")
        await gatherResults(
            [Deferred.fromCoroutine(m.of_type("PEER_LEFT")) for m in members]
        )
    for p in [*members, joiner]:
        p.abort()
    return samples


async def relay(
    reactor: Any, port: int, pairs: int, seconds: float, rate: float, window: int
) -> Any:
    """OFFER/CANDIDATE between pairs: paced (rate > 0) or closed loop (window).

    Returns (received, elapsed, latencies, timer lateness, CPU share). The payload is an
    RTCIceCandidateInit with the send time (``time.monotonic_ns``) added as
    ``t``; the one-way latency is taken when the frame is read, from the send
    time of that very frame. In paced mode the 1 ms send timer's lateness is
    kept too: how late this process got the CPU, the box's own scheduling
    noise, which bounds what the relay latencies can show.
    """
    import gc

    from twisted.internet.defer import Deferred

    peers = await _open_peers(reactor, port, 2 * pairs)
    pid = os.getpid()
    for i in range(pairs):
        a, b = peers[2 * i], peers[2 * i + 1]
        await a.request(type="JOIN", room_id=f"relay-{pid}-{i}")
        await b.request(type="JOIN", room_id=f"relay-{pid}-{i}")
    latencies: list[float] = []
    lateness: list[float] = []
    received = [0]
    frames: list[tuple[Any, str]] = []
    kinds = ("OFFER", "CANDIDATE")
    for i in range(pairs):
        a, b = peers[2 * i], peers[2 * i + 1]
        for src, dst in ((a, b), (b, a)):
            frames.append((src, dst.peer_id))

    candidate = "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host"

    def make(kind: str, target: str) -> bytes:
        return (
            f'{{"type":"{kind}","target_id":"{target}","payload":'
            f'{{"t":{time.monotonic_ns()},"candidate":"{candidate}",'
            f'"sdpMid":"0","sdpMLineIndex":0}}}}'
        ).encode()

    done: Deferred[None] = Deferred()
    deadline = time.monotonic() + seconds

    def receiver(sender: Any, target_id: str) -> Any:
        # In closed loop each arrival makes the same sender send the next one,
        # keeping ``window`` relays in flight per direction.
        def recv(payload: bytes) -> None:
            now = time.monotonic_ns()
            i = payload.find(b'"t":')
            if i < 0:
                return
            j = payload.find(b",", i)
            latencies.append((now - int(payload[i + 4 : j])) / 1e9)
            received[0] += 1
            if rate <= 0 and now / 1e9 < deadline:
                sender.send_raw(make("CANDIDATE", target_id), False)

        return recv

    by_id = {p.peer_id: p for p in peers}
    for src, dst_id in frames:
        by_id[dst_id].on_frame = receiver(src, dst_id)
    # As the daemon does (settle_heap): no full collection walks the setup.
    gc.collect()
    gc.freeze()
    began = time.monotonic()
    cpu_began = time.process_time()
    deadline = began + seconds
    if rate > 0:
        interval = 0.001
        sent = [0]
        due = [began]

        def tick() -> None:
            now = time.monotonic()
            lateness.append(now - due[0])
            if now >= deadline:
                reactor.callLater(0.3, done.callback, None)
                return
            # Open loop: send what the elapsed time owes, whatever the tick rate.
            owed = int((now - began) * rate) - sent[0]
            for _ in range(owed):
                src, dst_id = frames[sent[0] % len(frames)]
                src.send_raw(make(kinds[sent[0] % 2], dst_id), False)
                sent[0] += 1
            due[0] = time.monotonic() + interval
            reactor.callLater(interval, tick)

        tick()
    else:
        for src, dst_id in frames:
            for k in range(window):
                src.send_raw(make(kinds[k % 2], dst_id), False)
        reactor.callLater(seconds + 0.3, done.callback, None)
    await done
    cpu = (time.process_time() - cpu_began) / (time.monotonic() - began)
    elapsed = min(time.monotonic() - began, seconds)
    for p in peers:
        p.abort()
    gc.unfreeze()
    return received[0], elapsed, latencies, lateness, cpu


def _worker(name: str, args: tuple[Any, ...], queue: Any) -> None:
    fn = globals()[name]
    queue.put(_run(fn, *args))


def in_workers(name: str, per_worker: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(name, a, queue)) for a in per_worker]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(10)
    return results


# ---------------------------------------------------------------------------


SECTIONS = ("join", "fanout", "paced", "max")
# Client timer lateness p99 (ms) up to which a paced run counts as quiet.
QUIET_TIMER_MS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=40, help="relay pairs in all")
    parser.add_argument("--paced-rate", type=float, default=5000.0)
    parser.add_argument(
        "--paced-workers",
        type=int,
        default=1,
        help="client processes for the paced run (each one more process asking "
        "the 2 cores for a time slice on every message)",
    )
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--fanout-rounds", type=int, default=30)
    parser.add_argument(
        "--repeat", type=int, default=1, help="relay runs (paced and max) to report"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="join,fanout,...")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory(prefix="bench-rooms-") as directory:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", directory],
            stdout=subprocess.PIPE,
            text=True,
        )
        # The same-run reference: a bare forwarder (no actrix) in its own process.
        reference = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "rooms_reference.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and reference.stdout is not None
            port = int(server.stdout.readline())
            ref = (int(reference.stdout.readline()), reference.pid)
            results = run_all(args, port, server.pid, ref)
        finally:
            for process in (server, reference):
                process.terminate()
                process.wait(10)
    report(results, args)


def run_relay(
    args: argparse.Namespace, port: int, pid: int, workers: int, rate: float
) -> dict[str, Any]:
    """One relay run over ``args.pairs`` pairs split among ``workers``."""
    pairs = max(1, args.pairs // workers)
    window = 0 if rate > 0 else args.window
    load = os.getloadavg()[0]
    cpu0 = cpu_seconds(pid)
    rows = in_workers(
        "relay",
        [(port, pairs, args.seconds, rate / workers, window) for _ in range(workers)],
    )
    cpu1 = cpu_seconds(pid)
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    lat = [x for r in rows for x in r[2]]
    late = [x for r in rows for x in r[3]]
    elapsed = max(r[1] for r in rows)
    return {
        "msgs_per_s": sum(r[0] for r in rows) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "max_ms": max(lat, default=float("nan")) * 1e3,
        "timer_late_p99_ms": pct(late, 99) * 1e3,
        "server_cpu": (user + system) / elapsed,
        "server_sys": system / elapsed,
        "client_cpu": sum(r[4] for r in rows),
        "load": load,
    }


def run_all(
    args: argparse.Namespace, port: int, pid: int, ref: tuple[int, int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    only = set(args.only.split(","))
    workers = args.workers
    share = max(1, args.peers // workers)
    for size in (2, 10, 50) if "join" in only else ():
        rows = in_workers(
            "join_storm", [(port, share, size, f"s{size}w{w}") for w in range(workers)]
        )
        elapsed = max(r[0] for r in rows)
        lat = [x for r in rows for x in r[1]]
        out[f"join{size}"] = {
            "joins_per_s": len(lat) / elapsed,
            "p50_ms": pct(lat, 50) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3,
            "n": len(lat),
        }
    if "fanout" in only:
        fan = in_workers("fan_out", [(port, args.fanout_rounds)])[0]
        out["fanout50"] = {"p50_ms": pct(fan, 50) * 1e3, "p99_ms": pct(fan, 99) * 1e3}
    # Each daemon run is followed by the same run against the bare forwarder.
    for _ in range(args.repeat):
        if "paced" in only:
            out.setdefault("relay_paced", []).append(
                run_relay(args, port, pid, args.paced_workers, args.paced_rate)
            )
            out.setdefault("ref_paced", []).append(
                run_relay(args, ref[0], ref[1], args.paced_workers, args.paced_rate)
            )
        if "max" in only:
            out.setdefault("relay_max", []).append(
                run_relay(args, port, pid, workers, 0)
            )
            out.setdefault("ref_max", []).append(
                run_relay(args, ref[0], ref[1], workers, 0)
            )
    return out


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (the lower middle of an even count)."""
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{'measure':<16}{'rate':>14}{'p50 ms':>10}{'p99 ms':>10}  note")
    result: list[str] = []
    if "join2" in out:
        for size in (2, 10, 50):
            r = out[f"join{size}"]
            print(
                f"{f'join room={size}':<16}{r['joins_per_s']:>10.0f} j/s"
                f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}  {r['n']} joins, JOIN→ACK"
            )
            result.append(f"join{size}_per_s={r['joins_per_s']:.0f}")
        join_p99 = max(out[f"join{n}"]["p99_ms"] for n in (2, 10, 50))
        result.append(f"join_p99_ms={join_p99:.2f}")
    if "fanout50" in out:
        r = out["fanout50"]
        print(
            f"{'fanout 50':<16}{'':>14}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            "  JOIN→49 PEER_JOINED"
        )
        result.append(f"fanout50_p99_ms={r['p99_ms']:.2f}")
    for key in ("relay_paced", "ref_paced", "relay_max", "ref_max"):
        for r in out.get(key, []):
            print(
                f"{key:<16}{r['msgs_per_s']:>10.0f} m/s"
                f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
                f"  max {r['max_ms']:.1f} ms, server CPU {r['server_cpu'] * 100:.0f}%"
                f" ({r['server_sys'] * 100:.0f}% sys), clients"
                f" {r['client_cpu'] * 100:.0f}%,"
                f" client timer late p99 {r['timer_late_p99_ms']:.2f} ms,"
                f" load {r['load']:.1f}"
            )
    if "relay_paced" in out:
        runs = out["relay_paced"]
        r = median_run(runs, "p99_ms")
        result += [
            f"relay_paced_per_s={r['msgs_per_s']:.0f}",
            f"relay_paced_p50_ms={r['p50_ms']:.2f}",
            f"relay_paced_p99_ms={r['p99_ms']:.2f}",
            f"relay_paced_p99_range_ms={min(x['p99_ms'] for x in runs):.2f}"
            f"-{max(x['p99_ms'] for x in runs):.2f}",
            f"relay_paced_timer_late_p99_ms={r['timer_late_p99_ms']:.2f}",
        ]
        # The box's own noise: when the client's 1 ms timer fires late by more
        # than QUIET_TIMER_MS at p99, other processes hold the cores and the
        # relay p99 measures them. The run on the quietest box is reported too
        # (labelled, next to the median), not in place of it.
        quiet = min(runs, key=lambda x: x["timer_late_p99_ms"])
        result += [
            f"relay_paced_quietest_p99_ms={quiet['p99_ms']:.2f}",
            f"relay_paced_quietest_timer_late_p99_ms={quiet['timer_late_p99_ms']:.2f}",
            f"relay_paced_quiet_runs="
            f"{sum(x['timer_late_p99_ms'] <= QUIET_TIMER_MS for x in runs)}"
            f"/{len(runs)}",
        ]
        refs = out["ref_paced"]
        ref = median_run(refs, "p99_ms")
        result += [
            f"ref_paced_p50_ms={ref['p50_ms']:.2f}",
            f"ref_paced_p99_ms={ref['p99_ms']:.2f}",
            f"ref_paced_p99_range_ms={min(x['p99_ms'] for x in refs):.2f}"
            f"-{max(x['p99_ms'] for x in refs):.2f}",
        ]
    if "relay_max" in out:
        runs = out["relay_max"]
        r = median_run(runs, "msgs_per_s")
        result += [
            f"relay_max_per_s={r['msgs_per_s']:.0f}",
            f"relay_max_range={min(x['msgs_per_s'] for x in runs):.0f}"
            f"-{max(x['msgs_per_s'] for x in runs):.0f}",
            f"ref_max_per_s="
            f"{median_run(out['ref_max'], 'msgs_per_s')['msgs_per_s']:.0f}",
        ]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    result.append(f"load={os.getloadavg()[0]:.1f}")
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
