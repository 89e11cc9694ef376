"""Spec compatibility analysis and its bounded, expiring cache (signaling.md §8.4).

``analyze_specs`` compares a client's ServiceSpec (the base) with a candidate's:
packages are paired by name and each pair's ``.proto`` text is compiled into a
FileDescriptorProto. Two files are *Green* when their canonical descriptors are
equal (comments, whitespace and declaration order do not matter), *Yellow* when
the candidate is a backward-compatible superset (every old message keeps its
(field number, type) pairs, every old service keeps its (method, input, output)
triples) and *Red* otherwise.

The ``.proto`` text comes from remote actors, so it is never compiled in the
daemon's process. First ``protobounds`` checks its size, file/token/declaration
counts and nesting depth, without parsing; text over a bound is an analysis
error. Then both specs of one analysis go to one bounded worker process
(``protoc_pool``: protoc from grpcio-tools behind ``RLIMIT_AS``/``RLIMIT_CPU``
and a wall-clock timeout), which answers a ``FileDescriptorSet`` per spec. A
worker crash, timeout or limit hit fails that spec's analysis like any
unparsable proto: route negotiation treats the candidate as not compatible
(§8.3).

The daemon uses ``analyzer.ProcessAnalyzer`` on a ``ProtocPool`` of long-lived
workers, which also remembers failed compiles by content so the same hostile
text never starts workers in a loop; ``CompatibilityCache`` keeps the results for 24 h
(10 000 entries at most) and lets concurrent misses for one key share one
analysis.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.errors import own_copy
from actrix.proto import actr_pb2
from actrix.signaling.protobounds import ProtoBoundsError, check_files
from actrix.signaling.protoc_pool import (
    CompileFailure,
    CompileJob,
    Outcome,
    compile_blocking,
)
from actrix.signaling.protodiff import GREEN as _GREEN
from actrix.signaling.protodiff import RED as _RED
from actrix.signaling.protodiff import compare_files, file_fingerprint

__all__ = [
    "Analyzer",
    "CacheStats",
    "CompatibilityCache",
    "CompatibilityError",
    "InlineAnalyzer",
    "analyze_specs",
    "compare_files",
    "file_fingerprint",
]

log = Logger()

_PACKAGE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_PACKAGE_NAME = 200

_LEVELS = (
    actr_pb2.FULLY_COMPATIBLE,
    actr_pb2.BACKWARD_COMPATIBLE,
    actr_pb2.BREAKING_CHANGES,
)


class CompatibilityError(Exception):
    """Two specs could not be compared (missing or blank protobufs, proto text
    over a bound, unparsable proto, a failed compile worker).

    Route candidates treat it as "not compatible".
    """


# ---------------------------------------------------------------------------
# Compile jobs for .proto text
# ---------------------------------------------------------------------------


def _file_names(package: str, index: int) -> list[str]:
    """Return the virtual file names a package's merged content is written under.

    A dotted package ``acme.common`` is reachable as ``acme.common.proto`` and as
    ``acme/common.proto`` so imports between the packages of one spec resolve
    where the names follow either convention. A package name that is not a
    protobuf identifier path gets a private name (nothing can import it), which
    also keeps arbitrary text out of the file system.
    """
    if len(package) > _MAX_PACKAGE_NAME or _PACKAGE_RE.fullmatch(package) is None:
        return [f"_actrix_pkg_{index}.proto"]
    names = [f"{package}.proto"]
    if "." in package:
        names.append(package.replace(".", "/") + ".proto")
    return names


def _compile_job(
    role: str, spec: actr_pb2.ServiceSpec, packages: Sequence[str]
) -> tuple[CompileJob, dict[str, str]]:
    """The job compiling ``packages`` of ``spec``, and each package's file name.

    Every package of the spec is written (so imports between them resolve),
    after the whole spec passed the bounds.

    Raises:
        CompatibilityError: if the spec's text exceeds a bound.
    """
    try:
        check_files([p.content for p in spec.protobufs], f"{role} spec")
    except ProtoBoundsError as e:
        raise CompatibilityError(f"proto text refused: {e}") from None
    files: list[tuple[str, str]] = []
    main_names: dict[str, str] = {}
    for index, protobuf in enumerate(spec.protobufs):
        names = _file_names(protobuf.package, index)
        main_names.setdefault(protobuf.package, names[0])
        files.extend((name, protobuf.content) for name in names)
    job = CompileJob(tuple(files), tuple(main_names[p] for p in packages))
    return job, {p: main_names[p] for p in packages}


def _descriptors(
    role: str, outcome: Outcome, names: dict[str, str]
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Map packages to their compiled files out of one worker answer.

    Raises:
        CompatibilityError: if the spec did not compile.
    """
    if isinstance(outcome, CompileFailure):
        raise CompatibilityError(f"{role} spec does not compile ({outcome.reason})")
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    try:
        descriptor_set.ParseFromString(outcome)
    except DecodeError:
        raise CompatibilityError(f"{role} spec: unreadable compiler output") from None
    by_name = {file.name: file for file in descriptor_set.file}
    result: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for package, name in names.items():
        if name not in by_name:
            raise CompatibilityError(f"{role} spec: no output for {package!r}")
        result[package] = by_name[name]
    return result


# ---------------------------------------------------------------------------
# Spec-level analysis
# ---------------------------------------------------------------------------


def _check_spec(role: str, spec: actr_pb2.ServiceSpec) -> None:
    if not spec.protobufs:
        raise CompatibilityError(f"{role} spec has no protobufs")
    for protobuf in spec.protobufs:
        if not protobuf.content.strip():
            raise CompatibilityError(
                f"{role} spec package {protobuf.package!r} has blank content"
            )


def _change(
    kind: str, package: str, description: str, breaking: bool
) -> actr_pb2.ProtocolChange:
    return actr_pb2.ProtocolChange(
        change_type=kind,
        file_name=package,
        location=package,
        description=description,
        is_breaking=breaking,
    )


def _first_by_package(spec: actr_pb2.ServiceSpec) -> dict[str, str]:
    packages: dict[str, str] = {}
    for protobuf in spec.protobufs:
        packages.setdefault(protobuf.package, protobuf.content)
    return packages


@attrs.frozen
class AnalysisPlan:
    """An analysis waiting for its compiles: the two jobs and how to read them."""

    base: actr_pb2.ServiceSpec
    candidate: actr_pb2.ServiceSpec
    analyzed_at: int
    jobs: tuple[CompileJob, ...]
    names: tuple[dict[str, str], ...]


def plan_analysis(
    base: actr_pb2.ServiceSpec, candidate: actr_pb2.ServiceSpec, analyzed_at: int
) -> AnalysisPlan:
    """Check both specs and prepare their compile jobs (none if nothing to compile).

    Raises:
        CompatibilityError: if either spec has no protobufs or a blank one, or
            its text exceeds a bound (``protobounds``).
    """
    _check_spec("base", base)
    _check_spec("candidate", candidate)
    if base.fingerprint == candidate.fingerprint:
        return AnalysisPlan(base, candidate, analyzed_at, (), ())
    old = _first_by_package(base)
    shared = [package for package in old if package in _first_by_package(candidate)]
    if not shared:
        return AnalysisPlan(base, candidate, analyzed_at, (), ())
    base_job, base_names = _compile_job("base", base, shared)
    candidate_job, candidate_names = _compile_job("candidate", candidate, shared)
    return AnalysisPlan(
        base,
        candidate,
        analyzed_at,
        (base_job, candidate_job),
        (base_names, candidate_names),
    )


def finish_analysis(
    plan: AnalysisPlan, outcomes: Sequence[Outcome]
) -> actr_pb2.CompatibilityAnalysisResult:
    """Compare the compiled files of a plan (one outcome per job, in order).

    Raises:
        CompatibilityError: if a spec did not compile.
    """
    base, candidate = plan.base, plan.candidate
    result = actr_pb2.CompatibilityAnalysisResult(
        level=actr_pb2.FULLY_COMPATIBLE,
        base_fingerprint=base.fingerprint,
        candidate_fingerprint=candidate.fingerprint,
        analyzed_at=plan.analyzed_at,
    )
    if base.fingerprint == candidate.fingerprint:
        return result
    compiled: list[dict[str, descriptor_pb2.FileDescriptorProto]] = [{}, {}]
    # No names when no package is shared: then nothing was compiled.
    for index, names in enumerate(plan.names):
        role = ("base", "candidate")[index]
        if index >= len(outcomes):
            raise CompatibilityError(f"{role} spec was not compiled")
        compiled[index] = _descriptors(role, outcomes[index], names)
    old_files, new_files = compiled
    old = _first_by_package(base)
    new = _first_by_package(candidate)
    worst = _GREEN
    for package in old:
        if package not in new:
            worst = _RED
            result.breaking_changes.append(
                _change(
                    "FILE_REMOVED", package, f"Proto file '{package}' was removed", True
                )
            )
            continue
        level = compare_files(old_files[package], new_files[package])
        worst = max(worst, level)
        if level != _GREEN:
            result.changes.append(
                _change(
                    "PROTO_CONTENT_CHANGED",
                    package,
                    f"Proto file '{package}' has semantic changes",
                    level == _RED,
                )
            )
        if level == _RED:
            result.breaking_changes.append(
                _change(
                    "BREAKING_PROTO_CHANGE",
                    package,
                    f"Breaking changes detected in '{package}'",
                    True,
                )
            )
    for package in new:
        if package not in old:
            result.changes.append(
                _change(
                    "FILE_ADDED", package, f"Proto file '{package}' was added", False
                )
            )
    result.level = _LEVELS[worst]
    return result


def analyze_specs(
    base: actr_pb2.ServiceSpec,
    candidate: actr_pb2.ServiceSpec,
    analyzed_at: int,
    compile_jobs: Callable[[Sequence[CompileJob]], list[Outcome]] = compile_blocking,
) -> actr_pb2.CompatibilityAnalysisResult:
    """Compare a client's spec (``base``) with a candidate's; blocking.

    ``compile_jobs`` defaults to one fresh bounded worker process per call.

    Raises:
        CompatibilityError: if either spec has no protobufs or a blank one, its
            text exceeds a bound, or a package present in both does not compile.
    """
    plan = plan_analysis(base, candidate, analyzed_at)
    return finish_analysis(plan, compile_jobs(plan.jobs) if plan.jobs else [])


# ---------------------------------------------------------------------------
# Analyzers: where the compiles run
# ---------------------------------------------------------------------------


class Analyzer(Protocol):
    """Runs an analysis somewhere; raises CompatibilityError like ``analyze_specs``."""

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult: ...


class InlineAnalyzer:
    """Blocks the caller on a fresh worker per analysis (tests and CLI tools)."""

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        return analyze_specs(base, candidate, analyzed_at)


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


_Result = actr_pb2.CompatibilityAnalysisResult


@attrs.frozen
class _Cached:
    stored_at: float
    result: actr_pb2.CompatibilityAnalysisResult | None
    error: str | None


@attrs.define
class CacheStats:
    """Counters for metrics: lookups answered from memory, analyses run, failures."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    evictions: int = 0


class CompatibilityCache:
    """Analysis results keyed ``"<type key>:<client fp>:<candidate fp>"``.

    Entries live ``ttl`` seconds (read from ``clock``); at ``max_entries`` the
    oldest insertion is evicted. Failed analyses are cached the same way (the
    analysis is deterministic in its inputs) so a broken spec is not recompiled
    on every request. Returned messages are shared: callers copy, never mutate.
    """

    def __init__(
        self,
        clock: IReactorTime,
        analyzer: Analyzer,
        max_entries: int = 10_000,
        ttl: float = 86_400,
    ) -> None:
        self._clock = clock
        self._analyzer = analyzer
        self._max_entries = max_entries
        self._ttl = ttl
        self._entries: collections.OrderedDict[str, _Cached] = collections.OrderedDict()
        self._inflight: dict[str, list[Deferred[_Result]]] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(type_key: str, client_fingerprint: str, candidate_fingerprint: str) -> str:
        """Return the cache key of one (type, client spec, candidate spec) triple."""
        return f"{type_key}:{client_fingerprint}:{candidate_fingerprint}"

    def get(
        self, type_key: str, client_fingerprint: str, candidate_fingerprint: str
    ) -> actr_pb2.CompatibilityAnalysisResult | None:
        """Return an unexpired cached result, or None.

        Raises:
            CompatibilityError: if the cached analysis failed.
        """
        key = self.key(type_key, client_fingerprint, candidate_fingerprint)
        cached = self._entries.get(key)
        if cached is None:
            return None
        if self._clock.seconds() - cached.stored_at > self._ttl:
            del self._entries[key]
            return None
        self.stats.hits += 1
        if cached.error is not None:
            raise CompatibilityError(cached.error)
        return cached.result

    async def analyze(
        self,
        type_key: str,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        """Return the cached result or run (and cache) the analysis.

        Concurrent calls for one key share a single analysis.

        Raises:
            CompatibilityError: if the specs cannot be compared.
        """
        cached = self.get(type_key, base.fingerprint, candidate.fingerprint)
        if cached is not None:
            return cached
        key = self.key(type_key, base.fingerprint, candidate.fingerprint)
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiter: Deferred[_Result] = Deferred()
            waiters.append(waiter)
            return await waiter
        self.stats.misses += 1
        self._inflight[key] = waiters = []
        try:
            result = await self._analyzer.analyze(
                base, candidate, int(self._clock.seconds())
            )
        except CompatibilityError as e:
            self.stats.errors += 1
            self._store(key, _Cached(self._clock.seconds(), None, str(e)))
            del self._inflight[key]
            for waiter in waiters:
                waiter.errback(CompatibilityError(str(e)))
            raise
        except BaseException as e:
            del self._inflight[key]
            for waiter in waiters:
                waiter.errback(own_copy(e))
            raise
        self._store(key, _Cached(self._clock.seconds(), result, None))
        del self._inflight[key]
        for waiter in waiters:
            waiter.callback(result)
        return result

    def _store(self, key: str, cached: _Cached) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
        self._entries[key] = cached
