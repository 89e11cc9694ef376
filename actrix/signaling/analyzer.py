"""Where the daemon's compatibility analyses run (signaling.md §8.4).

``ProcessAnalyzer`` is the ``compat.Analyzer`` of the daemon: it checks the
bounds and compares descriptors off the reactor thread and has protoc run in
worker processes (``protoc_pool``), remembering failed compiles by content.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Final, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from actrix.core.logthrottle import LogThrottle
from actrix.proto import actr_pb2
from actrix.signaling.compat import (
    AnalysisPlan,
    CompatibilityError,
    finish_analysis,
    plan_analysis,
)
from actrix.signaling.protoc_pool import (
    CompileFailure,
    CompileJob,
    Outcome,
    WorkerUnavailable,
)

__all__ = ["Compiler", "ProcessAnalyzer"]

log = Logger()

_P = ParamSpec("_P")
_T = TypeVar("_T")
# Failed compiles remembered by content, and for how long.
MAX_FAILED_COMPILES: Final = 4096
FAILED_COMPILE_TTL: Final = 86_400.0


def _prepare(
    base: actr_pb2.ServiceSpec, candidate: actr_pb2.ServiceSpec, analyzed_at: int
) -> tuple[AnalysisPlan, list[str]]:
    """``plan_analysis`` and the content digest of each compile job."""
    plan = plan_analysis(base, candidate, analyzed_at)
    return plan, [job.digest() for job in plan.jobs]


class Compiler(Protocol):
    """Compiles jobs out of process (``protoc_pool.ProtocPool``)."""

    async def compile(self, jobs: Sequence[CompileJob]) -> list[Outcome]: ...


class ProcessAnalyzer:
    """The daemon's analyzer: bounds and comparison on threads, protoc in workers.

    The specs are copied on the reactor thread; planning (the bounds included)
    and comparing run on ``threads``' pool when given (else inline), at most
    ``concurrency`` analyses at once, so even a spec at the bounds never stalls
    the reactor; only protoc runs in the ``compiler``'s worker processes. A
    spec whose compile failed is remembered by content for ``failure_ttl``
    seconds (``max_failures`` entries), so pairing the same hostile text with
    other specs answers the error without another worker.
    """

    def __init__(
        self,
        compiler: Compiler,
        clock: IReactorTime,
        threads: IReactorThreads | None = None,
        concurrency: int = 1,
        max_failures: int = MAX_FAILED_COMPILES,
        failure_ttl: float = FAILED_COMPILE_TTL,
    ) -> None:
        self._compiler = compiler
        self._clock = clock
        self._threads = threads
        self._semaphore = DeferredSemaphore(concurrency)
        self._max_failures = max_failures
        self._failure_ttl = failure_ttl
        self._failures: collections.OrderedDict[str, tuple[float, str]] = (
            collections.OrderedDict()
        )
        self._throttle = LogThrottle(clock)

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        # Copies, so the registry may replace its messages while threads read.
        base_copy = actr_pb2.ServiceSpec()
        base_copy.CopyFrom(base)
        candidate_copy = actr_pb2.ServiceSpec()
        candidate_copy.CopyFrom(candidate)
        await self._semaphore.acquire()
        try:
            return await self._analyze(base_copy, candidate_copy, analyzed_at)
        finally:
            self._semaphore.release()

    async def _analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        try:
            plan, digests = await self._offload(_prepare, base, candidate, analyzed_at)
        except CompatibilityError as e:
            self._log("refused", str(e))
            raise
        if not plan.jobs:
            return finish_analysis(plan, [])
        for role, digest in zip(("base", "candidate"), digests, strict=True):
            known = self._known_failure(digest)
            if known is not None:
                raise CompatibilityError(f"{role} spec does not compile ({known})")
        try:
            outcomes = await self._compiler.compile(plan.jobs)
        except WorkerUnavailable as e:
            # Our deployment's fault (or shutdown), not the spec's: not remembered.
            if self._throttle.admit("spec", "unavailable") is not None:
                log.error("proto text not compiled: {reason}", reason=str(e))
            raise CompatibilityError(str(e)) from None
        # After a crash the outcomes stop at the spec that killed the worker.
        for digest, outcome in zip(digests, outcomes, strict=False):
            if isinstance(outcome, CompileFailure):
                self._remember_failure(digest, outcome.reason)
                if outcome.kind != "compile":
                    self._log(outcome.kind, outcome.reason)
        return await self._offload(finish_analysis, plan, outcomes)

    async def _offload(
        self, f: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        if self._threads is None:
            return f(*args, **kwargs)
        pool = self._threads.getThreadPool()
        return await deferToThreadPool(self._threads, pool, f, *args, **kwargs)

    def _known_failure(self, digest: str) -> str | None:
        entry = self._failures.get(digest)
        if entry is None:
            return None
        if self._clock.seconds() - entry[0] > self._failure_ttl:
            del self._failures[digest]
            return None
        return entry[1]

    def _remember_failure(self, digest: str, reason: str) -> None:
        self._failures.pop(digest, None)
        while len(self._failures) >= self._max_failures:
            self._failures.popitem(last=False)
        self._failures[digest] = (self._clock.seconds(), reason)

    def _log(self, kind: str, reason: str) -> None:
        suppressed = self._throttle.admit("spec", kind)
        if suppressed is not None:
            log.warn(
                "proto text not compiled ({kind}): {reason};"
                " {suppressed} more since the last line",
                kind=kind,
                reason=reason,
                suppressed=suppressed,
            )
