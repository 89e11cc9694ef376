"""Bounded protoc worker processes, seen from the daemon.

``ProtocPool`` keeps at most ``size`` long-lived ``protoc_worker`` children
(spawned with ``reactor.spawnProcess`` from this interpreter), hands each one
job at a time over length-prefixed frames on stdin/stdout, and answers per spec
either the serialized ``FileDescriptorSet`` or a ``CompileFailure``. A child
that crashes, exceeds its memory or CPU limit, or outlives the wall-clock
timeout is killed; the spec it was working on fails with kind ``crash`` or
``timeout`` and the next job gets a fresh child. A child is also replaced after
``MAX_JOBS_PER_WORKER`` jobs so memory protoc left fragmented is given back.

``compile_blocking`` runs the same worker once with ``subprocess`` for tests and
command-line tools, where blocking is fine.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.pipes import ChildProcess
from actrix.signaling import protoc_worker

__all__ = [
    "CPU_LIMIT",
    "MAX_JOBS_PER_WORKER",
    "MEMORY_LIMIT",
    "POOL_SIZE",
    "TIMEOUT",
    "CompileFailure",
    "CompileJob",
    "Outcome",
    "ProtocPool",
    "ProtocReactor",
    "WorkerUnavailable",
    "compile_blocking",
    "death_outcome",
    "decode_answer",
    "split_frames",
]

log = Logger()

# Address space of one worker: Python + protoc need ~40 MB; bounded text
# compiles in a few MB more.
MEMORY_LIMIT: Final = 256 * 1024 * 1024
CPU_LIMIT: Final = 5  # seconds of CPU per spec
TIMEOUT: Final = 10.0  # wall-clock seconds per job (both specs of an analysis)
POOL_SIZE: Final = 1  # concurrent compiles; the box has few cores to spare
MAX_JOBS_PER_WORKER: Final = 200
_MAX_STDERR: Final = 4096
# Descriptors of bounded text are a fraction of this; more means a broken worker.
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
WORKER_MODULE: Final = "actrix.signaling.protoc_worker"


@attrs.frozen
class CompileJob:
    """One spec to compile: its (file name, text) pairs and the names to compile."""

    files: tuple[tuple[str, str], ...]
    names: tuple[str, ...]

    def digest(self) -> str:
        """sha256 of the job's inputs: equal jobs compile to equal outcomes."""
        return hashlib.sha256(
            protoc_worker.encode_request([(self.files, self.names)])
        ).hexdigest()


@attrs.frozen
class CompileFailure:
    """Why one spec did not compile: ``kind`` is compile, crash or timeout."""

    kind: str
    reason: str


Outcome = bytes | CompileFailure


class WorkerUnavailable(Exception):
    """No worker could run (it cannot set its limits, or the pool is closed)."""


class ProtocReactor(Protocol):
    """What the pool needs of the reactor."""

    def spawnProcess(  # Twisted's name
        self,
        processProtocol: ProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: dict[bytes | str, bytes | str] | None = None,
        path: bytes | str | None = None,
    ) -> IProcessTransport: ...

    def callLater(  # Twisted's name
        self, delay: float, callable: Callable[..., object], *args: object
    ) -> IDelayedCall: ...


def worker_argv(memory_limit: int, cpu_limit: int) -> list[str]:
    """The command line of one worker, run by this interpreter (the venv's)."""
    return [
        sys.executable,
        "-I",  # no user site-packages, no PYTHON* environment, no cwd on sys.path
        "-m",
        WORKER_MODULE,
        f"--memory-limit={memory_limit}",
        f"--cpu-limit={cpu_limit}",
    ]


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut complete frames off ``buffer``; return them and the rest."""
    frames: list[bytes] = []
    header = protoc_worker.HEADER
    while len(buffer) >= header.size:
        (size,) = header.unpack_from(buffer)
        if len(buffer) < header.size + size:
            break
        frames.append(buffer[header.size : header.size + size])
        buffer = buffer[header.size + size :]
    return frames, buffer


def decode_answer(frame: bytes) -> Outcome:
    """One answer frame: a FileDescriptorSet or a compile failure."""
    if frame[:1] == bytes([protoc_worker.STATUS_OK]):
        return frame[1:]
    return CompileFailure("compile", frame[1:200].decode("ascii", "replace"))


def death_outcome(status: int | None, signal_number: int | None) -> Outcome:
    """What a worker's end means for the spec it was compiling.

    Raises:
        WorkerUnavailable: if it ended because it could not set its limits.
    """
    if status == protoc_worker.EXIT_NO_LIMITS:
        raise WorkerUnavailable("protoc worker cannot set its resource limits")
    if signal_number is not None:
        return CompileFailure("crash", f"protoc worker got signal {signal_number}")
    return CompileFailure("crash", f"protoc worker exited with status {status}")


class _Worker(ChildProcess):
    """One child; runs one job at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs_done = 0
        self._buffer = b""
        self._stderr = b""
        self._expected = 0
        self._answers: list[Outcome] = []
        self._waiter: Deferred[list[Outcome]] | None = None

    def run(self, request: bytes, expected: int) -> Deferred[list[Outcome]]:
        self._expected = expected
        self._answers = []
        self._waiter = Deferred()
        if self.transport is None:
            raise WorkerUnavailable("protoc worker has no pipe")
        self.transport.write(request)
        return self._waiter

    def outReceived(self, data: bytes) -> None:  # Twisted's name
        self._buffer += data
        if len(self._buffer) > MAX_ANSWER_BYTES:
            self.kill()  # not our worker's behaviour: treat it as a crash
            return
        frames, self._buffer = split_frames(self._buffer)
        for frame in frames:
            self._answers.append(decode_answer(frame))
        if self._waiter is not None and len(self._answers) >= self._expected:
            waiter, self._waiter = self._waiter, None
            self.jobs_done += 1
            waiter.callback(self._answers[: self._expected])

    def errReceived(self, data: bytes) -> None:  # Twisted's name
        # Only a worker bug writes here (protoc's own errors are silenced);
        # keep the tail for the log line about its death.
        self._stderr = (self._stderr + data)[-_MAX_STDERR:]

    def processEnded(self, reason: Failure) -> None:  # Twisted's name
        self.alive = False
        status = getattr(reason.value, "exitCode", None)
        signal_number = getattr(reason.value, "signal", None)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            try:
                death = death_outcome(status, signal_number)
            except WorkerUnavailable as e:
                waiter.errback(e)
            else:
                waiter.callback([*self._answers, death])
        if self._stderr:
            log.debug("protoc worker stderr: {tail}", tail=self._stderr[-512:])
        self.ended()


class ProtocPool(Service):
    """Compiles jobs in at most ``size`` worker processes at once.

    As a service, stopping it ends every worker (idle ones at EOF of their
    stdin, busy ones with SIGKILL) and waits for them to exit.
    """

    def __init__(
        self,
        reactor: ProtocReactor,
        size: int = POOL_SIZE,
        memory_limit: int = MEMORY_LIMIT,
        cpu_limit: int = CPU_LIMIT,
        timeout: float = TIMEOUT,
        max_jobs_per_worker: int = MAX_JOBS_PER_WORKER,
    ) -> None:
        self._reactor = reactor
        self._semaphore = DeferredSemaphore(size)
        self._argv = worker_argv(memory_limit, cpu_limit)
        self._timeout = timeout
        self._max_jobs = max_jobs_per_worker
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self.spawned = 0

    async def compile(self, jobs: Sequence[CompileJob]) -> list[Outcome]:
        """Compile ``jobs`` in one worker, in order.

        Returns one outcome per job; after a crash or timeout the remaining
        jobs are not attempted, so the list is shorter than ``jobs`` and its
        last element is the failure.

        Raises:
            WorkerUnavailable: if the worker cannot run at all.
        """
        await self._semaphore.acquire()
        try:
            return await self._run(jobs)
        finally:
            self._semaphore.release()

    async def _run(self, jobs: Sequence[CompileJob]) -> list[Outcome]:
        if self._closed:
            raise WorkerUnavailable("the protoc pool is closed")
        worker = self._idle.pop() if self._idle else None
        while worker is not None and not worker.alive:  # died while idle
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = self._spawn()
        request = protoc_worker.encode_request([(j.files, j.names) for j in jobs])
        d = worker.run(request, len(jobs))
        timed_out: list[bool] = []

        def on_timeout() -> None:
            timed_out.append(True)
            worker.kill()

        timer = self._reactor.callLater(self._timeout, on_timeout)
        try:
            answers = await d
        finally:
            if timer.active():
                timer.cancel()
        if timed_out and isinstance(answers[-1], CompileFailure):
            answers[-1] = CompileFailure(
                "timeout", f"protoc worker exceeded {self._timeout:g} s"
            )
        if worker.alive and worker.jobs_done < self._max_jobs and not self._closed:
            self._idle.append(worker)
        else:
            self._retire(worker)
        return answers

    def _spawn(self) -> _Worker:
        worker = _Worker()
        # cwd "/": nothing a worker does may land in the daemon's directory.
        try:
            self._reactor.spawnProcess(
                worker, self._argv[0], self._argv, env={"PATH": os.defpath}, path="/"
            )
        except OSError as e:  # out of processes or memory: not the spec's fault
            raise WorkerUnavailable(f"cannot start a protoc worker: {e}") from None
        self._all.add(worker)
        self.spawned += 1
        worker.when_ended().addCallback(lambda _: self._all.discard(worker))
        return worker

    def _retire(self, worker: _Worker) -> None:
        if worker.alive and worker.transport is not None:
            worker.transport.closeStdin()  # the worker exits at EOF

    def stopService(self) -> Deferred[None]:  # Twisted's name
        super().stopService()
        return Deferred.fromCoroutine(self.close())

    async def close(self) -> None:
        """Stop every worker and wait until they have exited."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            self._retire(worker)
        ended = [w.when_ended() for w in list(self._all)]
        for worker in list(self._all):
            if worker not in idle:
                worker.kill()
        for d in ended:
            await d


def compile_blocking(
    jobs: Sequence[CompileJob],
    memory_limit: int = MEMORY_LIMIT,
    cpu_limit: int = CPU_LIMIT,
    timeout: float = TIMEOUT,
) -> list[Outcome]:
    """Like ``ProtocPool.compile`` in a fresh worker, blocking the caller.

    Raises:
        WorkerUnavailable: if the worker cannot set its limits.
    """
    request = protoc_worker.encode_request([(j.files, j.names) for j in jobs])
    try:
        done = subprocess.run(  # noqa: S603  # our interpreter and module, no shell
            worker_argv(memory_limit, cpu_limit),
            input=request,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={"PATH": os.defpath},
            cwd="/",
        )
    except subprocess.TimeoutExpired:
        return [CompileFailure("timeout", f"protoc worker exceeded {timeout:g} s")]
    frames, _rest = split_frames(done.stdout)
    answers = [decode_answer(frame) for frame in frames[: len(jobs)]]
    if len(answers) < len(jobs):
        if done.returncode < 0:
            answers.append(death_outcome(None, -done.returncode))
        else:
            answers.append(death_outcome(done.returncode, None))
    return answers
