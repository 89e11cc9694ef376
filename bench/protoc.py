"""Compatibility-analysis latency: how much bounded compilation costs.

Times one analysis of two small specs (one package each, a Yellow pair) three
ways: a fresh worker process per analysis (``analyze_specs``, what tests and
tools use), the daemon's ``ProcessAnalyzer`` on a ``ProtocPool`` that spawns a
worker per job, and the same pool keeping its worker (the daemon's setting).
Also times the bounds check of a spec at the limits. Prints a table and one
``RESULT`` line.

Usage: ``.venv/bin/python bench/protoc.py [--count N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actrix.proto import actr_pb2  # noqa: E402
from actrix.signaling.analyzer import ProcessAnalyzer  # noqa: E402
from actrix.signaling.compat import analyze_specs  # noqa: E402
from actrix.signaling.protobounds import check_files  # noqa: E402
from actrix.signaling.protoc_pool import ProtocPool  # noqa: E402

ECHO = (
    'syntax = "proto3";\npackage acme.echo;\n'
    'import "google/protobuf/timestamp.proto";\n'
    "message EchoRequest { string text = 1; google.protobuf.Timestamp at = 2; }\n"
    "message EchoResponse { string text = 1; }\n"
    "service Echo { rpc Say(EchoRequest) returns (EchoResponse); }\n"
)


def spec(fingerprint: str, content: str) -> actr_pb2.ServiceSpec:
    return actr_pb2.ServiceSpec(
        name="echo",
        fingerprint=fingerprint,
        protobufs=[
            actr_pb2.ServiceSpec.Protobuf(
                package="acme.echo", content=content, fingerprint="p"
            )
        ],
    )


BASE = spec("base", ECHO)
CANDIDATE = spec("cand", ECHO + "message Extra { int32 n = 1; }\n")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_blocking(count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        analyze_specs(BASE, CANDIDATE, 1)
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


async def time_pool(count: int, max_jobs: int) -> tuple[float, int]:
    pool = ProtocPool(reactor, max_jobs_per_worker=max_jobs)  # type: ignore[arg-type]
    analyzer = ProcessAnalyzer(pool, reactor, threads=reactor)  # type: ignore[arg-type]
    await analyzer.analyze(BASE, CANDIDATE, 1)  # warm up: the first spawn
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await analyzer.analyze(BASE, CANDIDATE, 1)
        samples.append(time.perf_counter() - start)
    await pool.close()
    return median_ms(samples), pool.spawned


def time_bounds() -> tuple[float, int]:
    body = "".join(
        f"message M{i} {{ int32 a = 1; string b = 2; repeated int64 c = 3; }}\n"
        for i in range(3000)
    )
    text = 'syntax = "proto3";\npackage acme.big;\n' + body
    start = time.perf_counter()
    check_files([text])
    return (time.perf_counter() - start) * 1000, len(text)


async def run(count: int) -> None:
    fresh = time_blocking(count)
    spawn_per_job, spawned = await time_pool(count, max_jobs=1)
    persistent, kept = await time_pool(count, max_jobs=200)
    bounds_ms, size = time_bounds()
    print(f"analysis of a Yellow pair, median of {count}:")
    print(f"  fresh worker per analysis (blocking)   {fresh:7.1f} ms")
    print(f"  pool, new worker per job ({spawned:3d} spawned) {spawn_per_job:7.1f} ms")
    print(f"  pool, persistent worker ({kept} spawned)   {persistent:7.1f} ms")
    print(f"bounds check of one {size // 1024} KiB spec        {bounds_ms:7.1f} ms")
    print(
        f"RESULT fresh_ms={fresh:.1f} spawn_per_job_ms={spawn_per_job:.1f}"
        f" persistent_ms={persistent:.1f} bounds_ms={bounds_ms:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()

    def report(failure: Failure) -> None:
        failure.printTraceback()

    def start() -> None:
        d = Deferred.fromCoroutine(run(args.count))
        d.addErrback(report)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
