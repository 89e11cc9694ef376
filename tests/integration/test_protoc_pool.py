"""ProtocPool with real worker processes: compiles, crashes, limits, shutdown."""

from __future__ import annotations

import resource
import subprocess

from google.protobuf import descriptor_pb2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from actrix.signaling import protoc_worker
from actrix.signaling.protoc_pool import (
    MEMORY_LIMIT,
    CompileFailure,
    CompileJob,
    Outcome,
    ProtocPool,
    worker_argv,
)
from tests.unit.signaling.hostile_protos import nested_aggregate_option, nested_groups

ECHO = (
    'syntax = "proto3";\npackage acme.echo;\n'
    'import "google/protobuf/timestamp.proto";\n'
    "message Ping { string text = 1; google.protobuf.Timestamp at = 2; }\n"
)


def job(text: str) -> CompileJob:
    """One single-file spec compiling acme.echo.proto."""
    return CompileJob((("acme.echo.proto", text),), ("acme.echo.proto",))


def messages(outcome: Outcome) -> list[str]:
    """The message names of the compiled acme.echo.proto."""
    if not isinstance(outcome, bytes):
        raise AssertionError(f"not compiled: {outcome}")
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(outcome)
    return [m.name for f in files.file for m in f.message_type]


class ProtocPoolTests(TestCase):
    """Jobs run in bounded children; a child's failure stays the job's failure."""

    timeout = 60

    def pool(self, **kwargs: float) -> ProtocPool:
        """A pool closed (and its children reaped) at cleanup."""
        pool = ProtocPool(reactor, **kwargs)  # type: ignore[arg-type]  # ints/floats
        self.addCleanup(lambda: Deferred.fromCoroutine(pool.close()))
        return pool

    async def compile(self, pool: ProtocPool, *jobs: CompileJob) -> list[Outcome]:
        """Run one request with a 20 s guard."""
        d = Deferred.fromCoroutine(pool.compile(jobs))
        d.addTimeout(20, reactor)
        return await d

    async def test_compiles_and_reuses_the_worker(self) -> None:
        """Two requests (of two specs and one) are served by one child."""
        pool = self.pool()
        first = await self.compile(pool, job(ECHO), job(ECHO + "message Y {}\n"))
        self.assertEqual([messages(o) for o in first], [["Ping"], ["Ping", "Y"]])
        second = await self.compile(pool, job("message {"))
        self.assertEqual(second, [CompileFailure("compile", "does not compile")])
        self.assertEqual(pool.spawned, 1)

    async def test_crash_fails_only_that_spec(self) -> None:
        """The 6 000-deep option kills its worker (SIGSEGV); the pool serves on."""
        pool = self.pool()
        outcomes = await self.compile(
            pool, job(ECHO), job(nested_aggregate_option()), job(ECHO)
        )
        self.assertEqual(len(outcomes), 2)
        self.assertEqual(messages(outcomes[0]), ["Ping"])
        self.assertIsInstance(outcomes[1], CompileFailure)
        assert isinstance(outcomes[1], CompileFailure)
        self.assertEqual(outcomes[1].kind, "crash")
        after = await self.compile(pool, job(ECHO))
        self.assertEqual(messages(after[0]), ["Ping"])
        self.assertEqual(pool.spawned, 2)

    async def test_memory_limit_fails_the_spec(self) -> None:
        """2 500 nested groups exceed the worker's address space and fail cleanly."""
        pool = self.pool(memory_limit=MEMORY_LIMIT)
        outcomes = await self.compile(pool, job(nested_groups()))
        self.assertEqual(len(outcomes), 1)
        self.assertIsInstance(outcomes[0], CompileFailure)
        assert isinstance(outcomes[0], CompileFailure)
        self.assertEqual(outcomes[0].kind, "crash")  # bad_alloc: abort
        after = await self.compile(pool, job(ECHO))
        self.assertEqual(messages(after[0]), ["Ping"])

    async def test_timeout_kills_the_worker(self) -> None:
        """A job past the wall-clock timeout fails as a timeout; a new child follows."""
        pool = self.pool(timeout=0.001)
        outcomes = await self.compile(pool, job(ECHO))
        self.assertEqual(len(outcomes), 1)
        self.assertIsInstance(outcomes[0], CompileFailure)
        assert isinstance(outcomes[0], CompileFailure)
        self.assertEqual(outcomes[0].kind, "timeout")
        await self.compile(pool, job(ECHO))
        self.assertEqual(pool.spawned, 2)

    async def test_worker_is_replaced_after_max_jobs(self) -> None:
        """After max_jobs_per_worker requests a child is retired for a fresh one."""
        pool = self.pool(max_jobs_per_worker=1)
        for _ in range(3):
            await self.compile(pool, job(ECHO))
        self.assertEqual(pool.spawned, 3)

    async def test_close_kills_a_busy_worker(self) -> None:
        """Closing during a job ends the child and fails the job as a crash."""
        pool = ProtocPool(reactor)  # type: ignore[arg-type]  # the real reactor
        d = Deferred.fromCoroutine(pool.compile([job(ECHO)]))
        await pool.close()
        outcomes = await d
        self.assertIsInstance(outcomes[0], CompileFailure)


class WorkerLimitTests(TestCase):
    """The worker refuses to compile when it cannot lower its limits."""

    def test_no_limits_no_compile(self) -> None:
        """A hard RLIMIT_AS below the requested limit makes the worker exit 3."""

        def lower_hard_limit() -> None:
            resource.setrlimit(
                resource.RLIMIT_AS, (MEMORY_LIMIT // 2, MEMORY_LIMIT // 2)
            )

        request = protoc_worker.encode_request([([("a.proto", ECHO)], ["a.proto"])])
        done = subprocess.run(  # noqa: S603  # our interpreter and module
            worker_argv(MEMORY_LIMIT, 5),
            input=request,
            capture_output=True,
            timeout=20,
            check=False,
            preexec_fn=lower_hard_limit,  # single-threaded child setup
        )
        self.assertEqual(done.returncode, protoc_worker.EXIT_NO_LIMITS)
        self.assertEqual(done.stdout, b"")

    def test_worker_runs_under_its_limits(self) -> None:
        """A waiting worker shows its address-space, CPU and core limits in /proc."""
        worker = subprocess.Popen(  # noqa: S603  # our interpreter and module
            worker_argv(MEMORY_LIMIT, 5),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert worker.stdin is not None
            # Round trip one job, so the limits are certainly in place.
            worker.stdin.write(
                protoc_worker.encode_request([([("a.proto", ECHO)], ["a.proto"])])
            )
            worker.stdin.flush()
            assert worker.stdout is not None
            header = worker.stdout.read(protoc_worker.HEADER.size)
            (size,) = protoc_worker.HEADER.unpack(header)
            self.assertEqual(worker.stdout.read(size)[:1], b"\x00")
            with open(f"/proc/{worker.pid}/limits", encoding="ascii") as f:
                limits = {
                    line[:26].strip(): line[26:].split()[:2] for line in f.readlines()
                }
        finally:
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(timeout=20)
            if worker.stdout is not None:
                worker.stdout.close()
        self.assertEqual(limits["Max address space"], [str(MEMORY_LIMIT)] * 2)
        self.assertEqual(limits["Max core file size"], ["0", "0"])
        soft_cpu = int(limits["Max cpu time"][0])
        self.assertGreaterEqual(soft_cpu, 5)
        self.assertLessEqual(soft_cpu, 10)
        self.assertEqual(worker.returncode, 0)
