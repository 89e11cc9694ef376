"""Tests for bounded compilation in actrix.signaling.compat (hostile specs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from actrix.proto import actr_pb2
from actrix.signaling.analyzer import ProcessAnalyzer
from actrix.signaling.compat import (
    CompatibilityCache,
    CompatibilityError,
    analyze_specs,
)
from actrix.signaling.protoc_pool import (
    CompileFailure,
    CompileJob,
    Outcome,
    WorkerUnavailable,
    compile_blocking,
)
from tests.unit.signaling.hostile_protos import nested_aggregate_option, nested_groups
from tests.unit.signaling.test_compat import ECHO, spec

BASE = spec("fp-base", ("acme.echo", ECHO))
YELLOW = spec("fp-yellow", ("acme.echo", ECHO + "message Y {}\n"))
RED = spec("fp-red", ("acme.echo", ECHO.replace("sent_at = 2;", "sent_at = 9;")))
AGGREGATE = spec("fp-aggregate", ("acme.echo", nested_aggregate_option()))
GROUPS = spec("fp-groups", ("acme.echo", nested_groups()))


def never_compile(jobs: Sequence[CompileJob]) -> list[Outcome]:
    """A compile function for analyses that must not reach protoc."""
    raise AssertionError("compiled text that should have been refused")


class HostileSpecTests(SynchronousTestCase):
    """Text over the bounds is an analysis error before any compile."""

    def test_nested_aggregate_option_is_refused(self) -> None:
        """The 6 000-deep aggregate option is refused on either side, uncompiled."""
        for base, candidate in ((BASE, AGGREGATE), (AGGREGATE, BASE)):
            with self.assertRaisesRegex(CompatibilityError, "proto text refused"):
                analyze_specs(base, candidate, 1, never_compile)

    def test_nested_groups_are_refused(self) -> None:
        """2 500 nested groups are refused, uncompiled."""
        with self.assertRaisesRegex(CompatibilityError, "nesting deeper than 64"):
            analyze_specs(BASE, GROUPS, 1, never_compile)

    def test_bounds_cover_packages_not_compared(self) -> None:
        """A hostile package only the candidate has (others may import it) counts."""
        candidate = spec(
            "fp-c", ("acme.echo", ECHO), ("acme.evil", nested_aggregate_option())
        )
        with self.assertRaises(CompatibilityError):
            analyze_specs(BASE, candidate, 1, never_compile)

    def test_equal_fingerprints_need_no_bounds(self) -> None:
        """§8.4 step 2 answers equal fingerprints without looking at the text."""
        twin = spec("fp-aggregate", ("acme.echo", ECHO))
        result = analyze_specs(twin, AGGREGATE, 1, never_compile)
        self.assertEqual(result.level, actr_pb2.FULLY_COMPATIBLE)

    def test_worker_crash_is_an_analysis_error(self) -> None:
        """A crashed worker makes the analysis fail with CompatibilityError."""

        def crash(jobs: Sequence[CompileJob]) -> list[Outcome]:
            return [CompileFailure("crash", "protoc worker got signal 11")]

        with self.assertRaisesRegex(CompatibilityError, "base spec does not compile"):
            analyze_specs(BASE, YELLOW, 1, crash)

    def test_unreadable_worker_output_is_an_analysis_error(self) -> None:
        """Bytes that are not a FileDescriptorSet fail the analysis cleanly."""

        def garbage(jobs: Sequence[CompileJob]) -> list[Outcome]:
            return [b"\xff\xff\xff", b"\xff\xff\xff"]

        with self.assertRaisesRegex(CompatibilityError, "unreadable"):
            analyze_specs(BASE, YELLOW, 1, garbage)


class FakeCompiler:
    """Records compile requests; answers through ``answer`` (default: a real worker)."""

    def __init__(
        self,
        answer: Callable[[Sequence[CompileJob]], list[Outcome]] = compile_blocking,
    ) -> None:
        self.requests: list[Sequence[CompileJob]] = []
        self._answer = answer

    async def compile(self, jobs: Sequence[CompileJob]) -> list[Outcome]:
        """Record the request, then answer."""
        self.requests.append(jobs)
        return self._answer(jobs)


def crash_candidate(jobs: Sequence[CompileJob]) -> list[Outcome]:
    """The base compiles, then the worker dies on the candidate."""
    return [compile_blocking(jobs[:1])[0], CompileFailure("crash", "signal 11")]


def crash_on_yellow(jobs: Sequence[CompileJob]) -> list[Outcome]:
    """Like a real worker, except that YELLOW's candidate text kills it."""
    if jobs[1].files[0][1] == YELLOW.protobufs[0].content:
        return crash_candidate(jobs)
    return compile_blocking(jobs)


class ProcessAnalyzerTests(SynchronousTestCase):
    """ProcessAnalyzer: bounds, one compile request per analysis, failure memory."""

    def setUp(self) -> None:
        """A fake clock at t=1000 and a log observer."""
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)

    def analyze(
        self,
        analyzer: ProcessAnalyzer,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
    ) -> Deferred[actr_pb2.CompatibilityAnalysisResult]:
        """Start one analysis at the fake time."""
        return Deferred.fromCoroutine(
            analyzer.analyze(base, candidate, int(self.clock.seconds()))
        )

    def warnings(self) -> list[str]:
        """The log_format of every warning so far."""
        return [
            str(e["log_format"]) for e in self.events if e["log_level"] == LogLevel.warn
        ]

    def test_results_match_analyze_specs(self) -> None:
        """Both specs go to the compiler in one request; results are unchanged."""
        compiler = FakeCompiler()
        analyzer = ProcessAnalyzer(compiler, self.clock)
        for candidate in (YELLOW, RED, spec("fp-green", ("acme.echo", "\n" + ECHO))):
            result = self.successResultOf(self.analyze(analyzer, BASE, candidate))
            self.assertEqual(result, analyze_specs(BASE, candidate, 1000))
        self.assertEqual([len(jobs) for jobs in compiler.requests], [2, 2, 2])

    def test_nothing_to_compile_sends_nothing(self) -> None:
        """Equal fingerprints and disjoint packages need no worker."""
        compiler = FakeCompiler()
        analyzer = ProcessAnalyzer(compiler, self.clock)
        twin = spec("fp-base", ("acme.echo", "not even a proto"))
        self.successResultOf(self.analyze(analyzer, BASE, twin))
        other = spec("fp-other", ("acme.other", ECHO))
        result = self.successResultOf(self.analyze(analyzer, BASE, other))
        self.assertEqual(result.level, actr_pb2.BREAKING_CHANGES)
        self.assertEqual(compiler.requests, [])

    def test_hostile_text_is_refused_without_a_worker(self) -> None:
        """Bounds refuse the hostile specs; no compile request, one warning per kind."""
        compiler = FakeCompiler(never_compile)
        analyzer = ProcessAnalyzer(compiler, self.clock)
        for hostile in (AGGREGATE, GROUPS):
            d = self.analyze(analyzer, BASE, hostile)
            self.failureResultOf(d, CompatibilityError)
        self.assertEqual(compiler.requests, [])
        # The second refusal within a minute is not logged.
        self.assertEqual(len(self.warnings()), 1)

    def test_failed_compile_is_remembered_by_content(self) -> None:
        """A candidate that crashed a worker is not compiled again with another base."""
        compiler = FakeCompiler(crash_on_yellow)
        analyzer = ProcessAnalyzer(compiler, self.clock)
        self.failureResultOf(self.analyze(analyzer, BASE, YELLOW), CompatibilityError)
        other_base = spec("fp-base-2", ("acme.echo", ECHO + "message Z {}\n"))
        f = self.failureResultOf(
            self.analyze(analyzer, other_base, YELLOW), CompatibilityError
        )
        self.assertIn("candidate spec does not compile (signal 11)", str(f.value))
        self.assertEqual(len(compiler.requests), 1)
        # The base compiled fine and is not held against anyone.
        self.successResultOf(self.analyze(analyzer, BASE, RED))
        self.assertEqual(len(compiler.requests), 2)

    def test_failure_memory_expires(self) -> None:
        """After the TTL the same text is tried once more."""
        compiler = FakeCompiler(crash_candidate)
        analyzer = ProcessAnalyzer(compiler, self.clock, failure_ttl=60)
        self.failureResultOf(self.analyze(analyzer, BASE, YELLOW), CompatibilityError)
        self.clock.advance(60)
        self.failureResultOf(self.analyze(analyzer, BASE, YELLOW), CompatibilityError)
        self.assertEqual(len(compiler.requests), 1)
        self.clock.advance(1)
        self.failureResultOf(self.analyze(analyzer, BASE, YELLOW), CompatibilityError)
        self.assertEqual(len(compiler.requests), 2)

    def test_failure_memory_is_bounded(self) -> None:
        """At max_failures the oldest remembered failure is forgotten."""
        compiler = FakeCompiler(crash_candidate)
        analyzer = ProcessAnalyzer(compiler, self.clock, max_failures=2)
        candidates = [spec(f"fp-{i}", ("acme.echo", ECHO + f"// {i}\n")) for i in "abc"]
        for candidate in candidates:
            self.failureResultOf(
                self.analyze(analyzer, BASE, candidate), CompatibilityError
            )
        self.failureResultOf(
            self.analyze(analyzer, BASE, candidates[2]), CompatibilityError
        )
        self.assertEqual(len(compiler.requests), 3)
        self.failureResultOf(
            self.analyze(analyzer, BASE, candidates[0]), CompatibilityError
        )
        self.assertEqual(len(compiler.requests), 4)

    def test_crashes_are_logged_throttled(self) -> None:
        """Worker crashes log one warning a minute; plain compile errors none."""
        compiler = FakeCompiler(crash_candidate)
        analyzer = ProcessAnalyzer(compiler, self.clock)
        for i in range(3):
            candidate = spec(f"fp-{i}", ("acme.echo", ECHO + f"// {i}\n"))
            self.failureResultOf(
                self.analyze(analyzer, BASE, candidate), CompatibilityError
            )
        self.assertEqual(len(self.warnings()), 1)
        broken = spec("fp-broken", ("acme.echo", "message {"))
        self.failureResultOf(
            self.analyze(ProcessAnalyzer(FakeCompiler(), self.clock), BASE, broken),
            CompatibilityError,
        )
        self.assertEqual(len(self.warnings()), 1)

    def test_cache_answers_hostile_specs_from_memory(self) -> None:
        """Through CompatibilityCache a refused spec is not analyzed twice."""
        compiler = FakeCompiler(never_compile)
        cache = CompatibilityCache(self.clock, ProcessAnalyzer(compiler, self.clock))
        for _ in range(2):
            d = Deferred.fromCoroutine(cache.analyze("acme:echo", BASE, AGGREGATE))
            self.failureResultOf(d, CompatibilityError)
        self.assertEqual((cache.stats.misses, cache.stats.errors), (1, 1))

    def test_unavailable_worker_is_an_error_not_held_against_the_spec(self) -> None:
        """No worker: the analysis fails, logged once, and the text is tried again."""

        def unavailable(jobs: Sequence[CompileJob]) -> list[Outcome]:
            raise WorkerUnavailable("protoc worker cannot set its resource limits")

        compiler = FakeCompiler(unavailable)
        analyzer = ProcessAnalyzer(compiler, self.clock)
        for _ in range(2):
            self.failureResultOf(
                self.analyze(analyzer, BASE, YELLOW), CompatibilityError
            )
        self.assertEqual(len(compiler.requests), 2)
        errors = [e for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)


class FakeThreadPool:
    """Queues work items; ``run_next`` executes one on the calling thread."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]] = []

    def callInThreadWithCallback(  # ThreadPool's API name
        self, on_result: Any, func: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Queue one call."""
        self.queue.append((on_result, func, args, kwargs))

    def run_next(self) -> None:
        """Run the oldest queued call and report its result."""
        on_result, func, args, kwargs = self.queue.pop(0)
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            on_result(False, Failure(e))
        else:
            on_result(True, result)


class FakeThreadReactor:
    """Just enough of IReactorThreads for deferToThreadPool."""

    def __init__(self) -> None:
        self.pool = FakeThreadPool()

    def getThreadPool(self) -> FakeThreadPool:  # reactor API name
        """Return the fake pool."""
        return self.pool

    def callFromThread(self, f: Any, *args: Any) -> None:  # reactor API
        """Run the callback immediately (we are already on the test thread)."""
        f(*args)


def on_threads(threads: FakeThreadReactor, compiler: FakeCompiler) -> ProcessAnalyzer:
    """A ProcessAnalyzer whose thread work goes to the fake pool."""
    return ProcessAnalyzer(compiler, task.Clock(), threads=threads)  # type: ignore[arg-type]  # fake reactor


class OffloadTests(SynchronousTestCase):
    """With a thread pool, bounds and comparison leave the reactor thread."""

    def test_plan_and_compare_run_on_the_pool(self) -> None:
        """Planning and comparing are two pool items; one analysis runs at a time."""
        threads = FakeThreadReactor()
        compiler = FakeCompiler()
        analyzer = on_threads(threads, compiler)
        d1 = Deferred.fromCoroutine(analyzer.analyze(BASE, YELLOW, 3))
        d2 = Deferred.fromCoroutine(analyzer.analyze(BASE, RED, 4))
        self.assertEqual(len(threads.pool.queue), 1)  # d2 waits for d1
        self.assertEqual(compiler.requests, [])
        threads.pool.run_next()  # plan + bounds
        self.assertEqual(len(compiler.requests), 1)
        threads.pool.run_next()  # compare
        result = self.successResultOf(d1)
        self.assertEqual(result.level, actr_pb2.BACKWARD_COMPATIBLE)
        threads.pool.run_next()
        threads.pool.run_next()
        self.assertEqual(self.successResultOf(d2).level, actr_pb2.BREAKING_CHANGES)

    def test_specs_are_copied_before_the_pool_runs(self) -> None:
        """Mutating the caller's spec after the call does not affect the analysis."""
        threads = FakeThreadReactor()
        analyzer = on_threads(threads, FakeCompiler())
        candidate = actr_pb2.ServiceSpec()
        candidate.CopyFrom(YELLOW)
        d = Deferred.fromCoroutine(analyzer.analyze(BASE, candidate, 3))
        del candidate.protobufs[:]
        threads.pool.run_next()
        threads.pool.run_next()
        self.assertEqual(self.successResultOf(d).level, actr_pb2.BACKWARD_COMPATIBLE)

    def test_bound_refusal_comes_back_from_the_pool(self) -> None:
        """A refusal raised on the pool fails the analysis with CompatibilityError."""
        threads = FakeThreadReactor()
        analyzer = on_threads(threads, FakeCompiler(never_compile))
        d = Deferred.fromCoroutine(analyzer.analyze(BASE, AGGREGATE, 3))
        threads.pool.run_next()
        self.failureResultOf(d, CompatibilityError)
