"""Spec compatibility analysis and its bounded, expiring cache (signaling.md §8.4).

``analyze_specs`` compares a client's ServiceSpec (the base) with a candidate's:
packages are paired by name and each pair's ``.proto`` text is compiled with the
protoc embedded in ``grpcio-tools`` into a FileDescriptorProto. Two files are
*Green* when their canonical descriptors are equal (comments, whitespace and
declaration order do not matter), *Yellow* when the candidate is a
backward-compatible superset (every old message keeps its (field number, type)
pairs, every old service keeps its (method, input, output) triples) and *Red*
otherwise.

Compiling is CPU work, so the daemon runs it through ``ThreadedAnalyzer`` off the
reactor thread; ``CompatibilityCache`` keeps the results for 24 h (10 000 entries
at most) and lets concurrent misses for one key share one analysis.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import grpc_tools  # type: ignore[import-untyped]  # grpcio-tools ships no type hints
from google.protobuf import descriptor_pb2
from grpc_tools import _protoc_compiler
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from actrix.proto import actr_pb2

__all__ = [
    "Analyzer",
    "CacheStats",
    "CompatibilityCache",
    "CompatibilityError",
    "InlineAnalyzer",
    "ThreadedAnalyzer",
    "analyze_specs",
    "compare_files",
    "file_fingerprint",
]

log = Logger()

# Where grpcio-tools keeps google/protobuf/*.proto (the well-known types).
_WELL_KNOWN_INCLUDE = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
_PACKAGE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_PACKAGE_NAME = 200
# The call every protobuf Python generator (>= 3.20) emits for a file; protoc
# escapes the literal to printable ASCII.
_SERIALIZED_FILE_RE = re.compile(rb"AddSerializedFile\((b'(?:[^'\\\n]|\\.)*')\)")

_GREEN, _YELLOW, _RED = 0, 1, 2
_LEVELS = (
    actr_pb2.FULLY_COMPATIBLE,
    actr_pb2.BACKWARD_COMPATIBLE,
    actr_pb2.BREAKING_CHANGES,
)


class CompatibilityError(Exception):
    """Two specs could not be compared (missing or blank protobufs, unparsable proto).

    Route candidates treat it as "not compatible".
    """


# ---------------------------------------------------------------------------
# Compiling .proto text
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


def _extract_descriptor(generated: bytes) -> descriptor_pb2.FileDescriptorProto:
    """Pull the serialized FileDescriptorProto out of protoc's generated Python.

    Only the one bytes literal is evaluated (``ast.literal_eval``, no code runs);
    parsing the whole generated module would cost several ms per file.
    """
    match = _SERIALIZED_FILE_RE.search(generated)
    if match is None:
        raise CompatibilityError("protoc output holds no file descriptor")
    literal = ast.literal_eval(match.group(1).decode("ascii"))
    if not isinstance(literal, bytes):
        raise CompatibilityError("protoc output holds no file descriptor")
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(literal)
    return proto


def _find_descriptor(
    generated: Sequence[tuple[bytes, bytes]], name: str
) -> descriptor_pb2.FileDescriptorProto:
    """Pick the descriptor of file ``name`` from protoc's outputs (imports come too)."""
    marker = f"# source: {name}\n".encode()
    for _module, code in generated:
        if marker in code:
            proto = _extract_descriptor(code)
            if proto.name == name:
                return proto
    raise CompatibilityError("protoc produced no output for the package")


def _compile_spec(
    spec: actr_pb2.ServiceSpec, packages: Sequence[str]
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Compile the named packages of ``spec``; every package is importable.

    Raises:
        CompatibilityError: if protoc reports an error for any named package.
    """
    result: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    with tempfile.TemporaryDirectory(prefix="actrix-proto-") as root:
        main_names: dict[str, str] = {}
        for index, protobuf in enumerate(spec.protobufs):
            names = _file_names(protobuf.package, index)
            main_names.setdefault(protobuf.package, names[0])
            for name in names:
                path = os.path.join(root, name)
                if os.path.exists(path):
                    continue  # duplicate package: the first one wins
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                    f.write(protobuf.content)
        include = [root.encode(), _WELL_KNOWN_INCLUDE.encode()]
        for package in packages:
            name = main_names[package]
            try:
                generated = _protoc_compiler.get_protos(name.encode(), include)
            except _protoc_compiler.ProtocErrors as e:
                raise CompatibilityError(
                    f"package {package!r} does not compile ({len(e.errors())} errors)"
                ) from None
            result[package] = _find_descriptor(generated, name)
    return result


# ---------------------------------------------------------------------------
# Canonical form and per-file comparison
# ---------------------------------------------------------------------------


def _sort_in_place(items: Any, key: Callable[[Any], Any] | None = None) -> None:
    """Reorder a repeated protobuf field (declaration order is not API)."""
    ordered = sorted(items, key=key)
    del items[:]
    items.extend(ordered)


def _sort_message(message: descriptor_pb2.DescriptorProto) -> None:
    _sort_in_place(message.field, key=lambda f: f.number)
    _sort_in_place(message.extension, key=lambda f: (f.extendee, f.number))
    for nested in message.nested_type:
        _sort_message(nested)
    _sort_in_place(message.nested_type, key=lambda m: m.name)
    for enum in message.enum_type:
        _sort_enum(enum)
    _sort_in_place(message.enum_type, key=lambda e: e.name)


def _sort_enum(enum: descriptor_pb2.EnumDescriptorProto) -> None:
    _sort_in_place(enum.value, key=lambda v: (v.number, v.name))


def _canonical(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """Serialize a descriptor with names, source info and declaration order removed."""
    canon = descriptor_pb2.FileDescriptorProto()
    canon.CopyFrom(file)
    canon.ClearField("name")  # our temp file name, not part of the API
    canon.ClearField("source_code_info")
    for message in canon.message_type:
        _sort_message(message)
    _sort_in_place(canon.message_type, key=lambda m: m.name)
    for enum in canon.enum_type:
        _sort_enum(enum)
    _sort_in_place(canon.enum_type, key=lambda e: e.name)
    for service in canon.service:
        _sort_in_place(service.method, key=lambda m: m.name)
    _sort_in_place(canon.service, key=lambda s: s.name)
    _sort_in_place(canon.extension, key=lambda f: (f.extendee, f.number))
    _sort_in_place(canon.dependency)
    # public/weak dependencies are indexes into the dependency list: remap them.
    for field in ("public_dependency", "weak_dependency"):
        old_indexes = list(getattr(file, field))
        indexes = getattr(canon, field)
        del indexes[:]
        indexes.extend(
            sorted(
                list(canon.dependency).index(file.dependency[i]) for i in old_indexes
            )
        )
    return canon.SerializeToString(deterministic=True)


def file_fingerprint(file: descriptor_pb2.FileDescriptorProto) -> str:
    """Return a compiled file's semantic fingerprint: sha256 of its canonical form."""
    return "sha256:" + hashlib.sha256(_canonical(file)).hexdigest()


def _walk_messages(
    prefix: str, messages: Sequence[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _walk_messages(name, message.nested_type)


def _api_surface(
    file: descriptor_pb2.FileDescriptorProto,
) -> tuple[dict[str, set[tuple[int, int, str]]], dict[str, set[tuple[str, str, str]]]]:
    """Map messages to (number, type, type name) sets, services to method triples."""
    prefix = f".{file.package}" if file.package else ""
    messages = {
        name: {(f.number, int(f.type), f.type_name) for f in message.field}
        for name, message in _walk_messages(prefix, file.message_type)
    }
    services = {
        f"{prefix}.{service.name}": {
            (m.name, m.input_type, m.output_type) for m in service.method
        }
        for service in file.service
    }
    return messages, services


def _is_superset(
    base: descriptor_pb2.FileDescriptorProto,
    candidate: descriptor_pb2.FileDescriptorProto,
) -> bool:
    base_messages, base_services = _api_surface(base)
    new_messages, new_services = _api_surface(candidate)
    for name, fields in base_messages.items():
        if name not in new_messages or not fields <= new_messages[name]:
            return False
    for name, methods in base_services.items():
        if name not in new_services or not methods <= new_services[name]:
            return False
    return True


def compare_files(
    base: descriptor_pb2.FileDescriptorProto,
    candidate: descriptor_pb2.FileDescriptorProto,
) -> int:
    """Return 0 (Green), 1 (Yellow) or 2 (Red) for one pair of compiled files."""
    if file_fingerprint(base) == file_fingerprint(candidate):
        return _GREEN
    return _YELLOW if _is_superset(base, candidate) else _RED


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


def analyze_specs(
    base: actr_pb2.ServiceSpec, candidate: actr_pb2.ServiceSpec, analyzed_at: int
) -> actr_pb2.CompatibilityAnalysisResult:
    """Compare a client's spec (``base``) with a candidate's; blocking (runs protoc).

    Raises:
        CompatibilityError: if either spec has no protobufs or a blank one, or a
            package present in both does not compile.
    """
    _check_spec("base", base)
    _check_spec("candidate", candidate)
    result = actr_pb2.CompatibilityAnalysisResult(
        level=actr_pb2.FULLY_COMPATIBLE,
        base_fingerprint=base.fingerprint,
        candidate_fingerprint=candidate.fingerprint,
        analyzed_at=analyzed_at,
    )
    if base.fingerprint == candidate.fingerprint:
        return result
    old = _first_by_package(base)
    new = _first_by_package(candidate)
    shared = [package for package in old if package in new]
    old_files = _compile_spec(base, shared) if shared else {}
    new_files = _compile_spec(candidate, shared) if shared else {}
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


# ---------------------------------------------------------------------------
# Analyzers: where analyze_specs runs
# ---------------------------------------------------------------------------


class Analyzer(Protocol):
    """Runs ``analyze_specs`` somewhere; raises CompatibilityError like it."""

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult: ...


class InlineAnalyzer:
    """Runs the analysis on the calling thread (tests and command-line tools only)."""

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        return analyze_specs(base, candidate, analyzed_at)


class ThreadedAnalyzer:
    """Runs analyses on the reactor's thread pool, at most ``concurrency`` at once.

    The specs are copied on the reactor thread first, so the registry may keep
    mutating its own messages while protoc runs.
    """

    def __init__(self, reactor: IReactorThreads, concurrency: int = 1) -> None:
        self._reactor = reactor
        self._semaphore = DeferredSemaphore(concurrency)

    async def analyze(
        self,
        base: actr_pb2.ServiceSpec,
        candidate: actr_pb2.ServiceSpec,
        analyzed_at: int,
    ) -> actr_pb2.CompatibilityAnalysisResult:
        base_copy = actr_pb2.ServiceSpec()
        base_copy.CopyFrom(base)
        candidate_copy = actr_pb2.ServiceSpec()
        candidate_copy.CopyFrom(candidate)
        return await self._semaphore.run(
            deferToThreadPool,
            self._reactor,
            self._reactor.getThreadPool(),
            analyze_specs,
            base_copy,
            candidate_copy,
            analyzed_at,
        )


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
                waiter.errback(e)
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
