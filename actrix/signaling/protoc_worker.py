"""The protoc worker: a child process that compiles untrusted ``.proto`` text.

The daemon never runs protoc itself (signaling.md §8.4 analysis compiles
specs registered by remote actors). It starts this module as
``python -m actrix.signaling.protoc_worker --memory-limit B --cpu-limit S``;
the worker caps its own address space (``RLIMIT_AS``), forbids core files
(``RLIMIT_CORE``) and, before each spec, its CPU time (``RLIMIT_CPU``: the
kernel kills it past the budget), then serves jobs from stdin until EOF.

Wire format, both directions: frames of a 4-byte big-endian length and a body.
A request body is JSON ``{"specs": [{"files": [[name, text], ...], "compile":
[name, ...]}, ...]}``. The worker compiles the specs in order, each in its own
temporary directory with grpcio-tools' public ``grpc_tools.protoc.main`` and
``--descriptor_set_out`` (one run per name), and answers one frame per spec as
soon as it is done: status byte ``0`` and a serialized ``FileDescriptorSet`` of
the compiled files, or ``1`` and a short reason. A worker that dies mid-job
has therefore answered exactly the specs before the one that killed it.

Only the standard library is imported at start-up (grpcio-tools loads once
the limits are in place); this module must not import Twisted or actrix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Final

from actrix.core.pipes import read_exact

HEADER: Final = struct.Struct(">I")
STATUS_OK: Final = 0
STATUS_ERROR: Final = 1
# A request holds at most two bounded specs (protobounds: 1 MiB each, JSON
# escaping at most doubles it); an answer is a descriptor set of bounded text.
MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024
# Exit status when the limits cannot be set (e.g. a seccomp filter denies
# setrlimit): the worker refuses to compile anything without them.
EXIT_NO_LIMITS: Final = 3

# The temp file protoc writes its answer to, inside each job's directory.
_OUTPUT: Final = ".actrix-descriptors.pb"

Compile = Callable[[Sequence[str]], int]


Job = tuple[Sequence[tuple[str, str]], Sequence[str]]


def encode_request(specs: Sequence[Job]) -> bytes:
    """Frame a request: per spec, its (file name, text) pairs and names to compile."""
    body = json.dumps(
        {
            "specs": [
                {"files": [list(f) for f in files], "compile": list(names)}
                for files, names in specs
            ]
        }
    ).encode("ascii")  # ensure_ascii escapes lone surrogates too
    return HEADER.pack(len(body)) + body


def _safe_name(name: str) -> bool:
    """A relative path below the job directory (the daemon builds the names)."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and "\0" not in name
        and all(part not in ("", ".", "..") for part in parts)
    )


def compile_spec(
    files: Sequence[tuple[str, str]],
    names: Sequence[str],
    include: str,
    protoc: Compile,
) -> tuple[int, bytes]:
    """Compile ``names`` out of ``files``; return (status, payload).

    ``include`` is the directory of the well-known types (google/protobuf/*).
    """
    if not names or not all(_safe_name(n) for n in [*names, *(f for f, _ in files)]):
        return STATUS_ERROR, b"invalid file names"
    with tempfile.TemporaryDirectory(prefix="actrix-proto-") as root:
        for name, text in files:
            path = os.path.join(root, name)
            if os.path.exists(path):
                continue  # duplicate package: the first one wins
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(text)
        output = os.path.join(root, _OUTPUT)
        # One protoc run per name: a package is on disk under two names, and
        # one run over several files could load it under both (one importing
        # acme/common.proto, another being acme.common.proto) and so see its
        # types defined twice.
        # Serialized messages concatenate into their merge, so the answer is
        # one FileDescriptorSet listing every named file.
        answer = b""
        for name in names:
            args = [
                "protoc",
                f"--proto_path={root}",
                f"--proto_path={include}",
                f"--descriptor_set_out={output}",
                name,
            ]
            with _quiet_stderr():
                status = protoc(args)
            if status != 0:
                return STATUS_ERROR, b"does not compile"
            with open(output, "rb") as descriptors:
                answer += descriptors.read()
        return STATUS_OK, answer


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """protoc prints each error (with the untrusted text) to fd 2: drop it."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _write_frame(stream: BinaryIO, status: int, payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload) + 1) + bytes([status]) + payload)
    stream.flush()


def _set_cpu_budget(seconds: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (used + seconds, hard))


def serve(
    stdin: BinaryIO,
    stdout: BinaryIO,
    include: str,
    protoc: Compile,
    before_spec: Callable[[], None],
) -> None:
    """Answer requests from ``stdin`` until EOF (or an oversized frame).

    ``before_spec`` runs before each spec is compiled (it renews the CPU budget).
    """
    while True:
        header = read_exact(stdin, HEADER.size)
        if header is None:
            return
        (size,) = HEADER.unpack(header)
        if size > MAX_REQUEST_BYTES:
            return
        body = read_exact(stdin, size)
        if body is None:
            return
        request = json.loads(body)
        for spec in request["specs"]:
            files = [(str(name), str(text)) for name, text in spec["files"]]
            names = [str(name) for name in spec["compile"]]
            before_spec()
            status, payload = compile_spec(files, names, include, protoc)
            _write_frame(stdout, status, payload)


def main(argv: Sequence[str] | None = None) -> int:
    """Set the limits, then serve jobs on stdin/stdout."""
    parser = argparse.ArgumentParser(prog="actrix.signaling.protoc_worker")
    parser.add_argument("--memory-limit", type=int, required=True)
    parser.add_argument("--cpu-limit", type=int, required=True)
    args = parser.parse_args(argv)
    if args.memory_limit <= 0 or args.cpu_limit <= 0:
        return EXIT_NO_LIMITS
    try:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
        # A crash must not leave a core file of up to the memory limit behind.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _set_cpu_budget(args.cpu_limit)
    except (OSError, ValueError):
        return EXIT_NO_LIMITS
    import grpc_tools  # type: ignore[import-untyped]  # grpcio-tools has no hints
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    serve(
        sys.stdin.buffer,
        sys.stdout.buffer,
        include,
        protoc.main,
        lambda: _set_cpu_budget(args.cpu_limit),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
