"""Tests for actrix.signaling.protoc_worker's job handling and its framing."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from google.protobuf import descriptor_pb2
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from actrix.signaling import protoc_worker
from actrix.signaling.protoc_pool import (
    CompileFailure,
    CompileJob,
    ProtocPool,
    WorkerUnavailable,
    death_outcome,
    decode_answer,
    split_frames,
)


class FakeProtoc:
    """Records protoc command lines; writes one FileDescriptorProto per call."""

    def __init__(self, status: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.seen: list[str] = []
        self._status = status

    def __call__(self, args: Sequence[str]) -> int:
        """Act like grpc_tools.protoc.main."""
        self.calls.append(list(args))
        root = args[1].removeprefix("--proto_path=")
        name = args[-1]
        path = os.path.join(root, name)
        with open(path, encoding="utf-8", errors="surrogatepass") as f:
            self.seen.append(f.read())
        if self._status == 0:
            output = args[3].removeprefix("--descriptor_set_out=")
            files = descriptor_pb2.FileDescriptorSet()
            files.file.add(name=name, package="p")
            with open(output, "wb") as out:
                out.write(files.SerializeToString())
        return self._status


def files_of(payload: bytes) -> list[str]:
    """The file names in a serialized FileDescriptorSet."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(payload)
    return [f.name for f in files.file]


class CompileSpecTests(SynchronousTestCase):
    """compile_spec writes the files, runs protoc per name and merges the answers."""

    def test_one_run_per_name_merged(self) -> None:
        """Each name is compiled alone; the answer lists every compiled file."""
        protoc = FakeProtoc()
        status, payload = protoc_worker.compile_spec(
            [("a.proto", "A"), ("x/b.proto", "B")],
            ["a.proto", "x/b.proto"],
            "/include",
            protoc,
        )
        self.assertEqual(status, protoc_worker.STATUS_OK)
        self.assertEqual(files_of(payload), ["a.proto", "x/b.proto"])
        self.assertEqual(protoc.seen, ["A", "B"])
        self.assertEqual(protoc.calls[0][2], "--proto_path=/include")

    def test_first_duplicate_wins(self) -> None:
        """A file name given twice keeps the first text."""
        protoc = FakeProtoc()
        protoc_worker.compile_spec(
            [("a.proto", "first"), ("a.proto", "second")], ["a.proto"], "/i", protoc
        )
        self.assertEqual(protoc.seen, ["first"])

    def test_protoc_error_is_a_status(self) -> None:
        """protoc's non-zero exit is answered as status 1."""
        status, payload = protoc_worker.compile_spec(
            [("a.proto", "A")], ["a.proto"], "/i", FakeProtoc(status=1)
        )
        self.assertEqual(status, protoc_worker.STATUS_ERROR)
        self.assertEqual(payload, b"does not compile")

    def test_unsafe_names_are_refused(self) -> None:
        """Absolute, escaping or empty names never reach the file system."""
        for name in ("/etc/x.proto", "../x.proto", "a/../../x.proto", "", "a//b"):
            protoc = FakeProtoc()
            status, _ = protoc_worker.compile_spec(
                [(name, "A")], ["ok.proto"], "/i", protoc
            )
            self.assertEqual(status, protoc_worker.STATUS_ERROR, name)
            self.assertEqual(protoc.calls, [])

    def test_surrogates_survive(self) -> None:
        """Text with lone surrogates (undecodable proto2 strings) is written as is."""
        protoc = FakeProtoc()
        job = ([("a.proto", "x\udcff")], ["a.proto"])
        request = protoc_worker.encode_request([job])
        stdout = io.BytesIO()
        protoc_worker.serve(io.BytesIO(request), stdout, "/i", protoc, lambda: None)
        frames, rest = split_frames(stdout.getvalue())
        self.assertEqual((len(frames), rest), (1, b""))
        self.assertEqual(protoc.seen, ["x\udcff"])


class ServeTests(SynchronousTestCase):
    """serve answers one frame per spec until EOF."""

    def test_frames_per_spec_and_budget_per_spec(self) -> None:
        """Two requests of two and one specs give three answers and three budgets."""
        budgets: list[int] = []
        request = protoc_worker.encode_request(
            [([("a.proto", "A")], ["a.proto"]), ([("b.proto", "B")], ["b.proto"])]
        ) + protoc_worker.encode_request([([("c.proto", "C")], ["c.proto"])])
        stdout = io.BytesIO()
        protoc_worker.serve(
            io.BytesIO(request), stdout, "/i", FakeProtoc(), lambda: budgets.append(1)
        )
        frames, rest = split_frames(stdout.getvalue())
        self.assertEqual(rest, b"")
        answers = [decode_answer(frame) for frame in frames]
        self.assertEqual(
            [files_of(a) for a in answers if isinstance(a, bytes)],
            [["a.proto"], ["b.proto"], ["c.proto"]],
        )
        self.assertEqual(len(budgets), 3)

    def test_oversized_frame_ends_the_worker(self) -> None:
        """A length over MAX_REQUEST_BYTES stops serving without reading it."""
        header = protoc_worker.HEADER.pack(protoc_worker.MAX_REQUEST_BYTES + 1)
        stdout = io.BytesIO()
        protoc_worker.serve(
            io.BytesIO(header + b"{}"), stdout, "/i", FakeProtoc(), lambda: None
        )
        self.assertEqual(stdout.getvalue(), b"")

    def test_truncated_frame_ends_the_worker(self) -> None:
        """EOF inside a frame is a quiet end."""
        request = protoc_worker.encode_request([([("a.proto", "A")], ["a.proto"])])
        stdout = io.BytesIO()
        protoc_worker.serve(
            io.BytesIO(request[:-3]), stdout, "/i", FakeProtoc(), lambda: None
        )
        self.assertEqual(stdout.getvalue(), b"")

    def test_main_refuses_to_run_without_positive_limits(self) -> None:
        """Zero or negative limits make the worker exit before compiling anything."""
        for argv in (
            ["--memory-limit=0", "--cpu-limit=5"],
            ["--memory-limit=1000000", "--cpu-limit=-1"],
        ):
            self.assertEqual(protoc_worker.main(argv), protoc_worker.EXIT_NO_LIMITS)


class FramingTests(SynchronousTestCase):
    """The daemon side's frame splitting and answer decoding."""

    def test_split_frames_keeps_partial_tail(self) -> None:
        """Complete frames are cut off; a partial one stays in the buffer."""
        header = protoc_worker.HEADER
        data = header.pack(2) + b"ab" + header.pack(3) + b"c"
        self.assertEqual(split_frames(data), ([b"ab"], header.pack(3) + b"c"))

    def test_decode_answer(self) -> None:
        """Status 0 is the descriptor set; anything else a compile failure."""
        self.assertEqual(decode_answer(b"\x00set"), b"set")
        self.assertEqual(
            decode_answer(b"\x01does not compile"),
            CompileFailure("compile", "does not compile"),
        )

    def test_death_kinds(self) -> None:
        """A signal or exit status is a crash; EXIT_NO_LIMITS is no worker at all."""
        self.assertEqual(
            death_outcome(None, 11),
            CompileFailure("crash", "protoc worker got signal 11"),
        )
        self.assertEqual(
            death_outcome(1, None),
            CompileFailure("crash", "protoc worker exited with status 1"),
        )
        with self.assertRaises(WorkerUnavailable):
            death_outcome(protoc_worker.EXIT_NO_LIMITS, None)


class NoProcessesReactor:
    """A reactor whose spawnProcess fails as under a process limit."""

    def spawnProcess(self, *args: object, **kwargs: object) -> None:  # reactor API
        """Fail like fork() under RLIMIT_NPROC."""
        raise OSError(11, "Resource temporarily unavailable")

    def callLater(self, *args: object) -> None:  # reactor API
        """Never reached."""
        raise AssertionError("no job may start")


class PoolSpawnTests(SynchronousTestCase):
    """A pool that cannot start a worker says so, without blaming the spec."""

    def test_spawn_failure_is_worker_unavailable(self) -> None:
        """OSError from spawnProcess becomes WorkerUnavailable."""
        pool = ProtocPool(NoProcessesReactor())  # type: ignore[arg-type]  # fake reactor
        job = CompileJob((("a.proto", "A"),), ("a.proto",))
        d = Deferred.fromCoroutine(pool.compile([job]))
        self.failureResultOf(d, WorkerUnavailable)
        self.assertEqual(pool.spawned, 0)
