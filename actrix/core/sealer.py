"""Identity tokens sealed in a child process, so issuing them leaves the reactor free.

One ECIES encryption (eciespy: key generation, ECDH, HKDF and AES-GCM through
coincurve and pycryptodome) costs ~0.2 ms of CPU, most of it Python that holds
the interpreter lock, so a thread pool cannot take it off the reactor's core:
at 1 000 registrations/s it was a third of the reactor's work, and ``/health``
waited behind it. :class:`TokenSealer` keeps one long-lived child
(:mod:`actrix.core.seal_worker`, this interpreter) and pipes it the public key
and the claims JSON of each token; the child runs the same eciespy call on the
other core and sends the token back.

Whenever the child cannot take a job (still starting is fine: jobs queue in
its pipe; but not running, ended, or more than ``max_pending`` jobs behind)
the job runs on the fallback :class:`~actrix.core.credentials.CryptoRunner`
instead, and jobs a dying child leaves unanswered are redone there, so a
registration never fails because of the child. A child that ends is started
again, at most once per ``restart_delay`` seconds.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Any, Final

import attrs
from prometheus_client.core import CounterMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core import seal_worker, tokens
from actrix.core.credentials import CryptoRunner
from actrix.core.interfaces import Claims
from actrix.core.pipes import ChildProcess

log = Logger()

MAX_PENDING: Final = 4096  # jobs in the child's pipe before the fallback takes over
RESTART_DELAY: Final = 5.0
STOP_TIMEOUT: Final = 2.0
MAX_ANSWER_BUFFER: Final = 1024 * 1024
WORKER_MODULE: Final = "actrix.core.seal_worker"


class SealFailed(Exception):
    """The child could not encrypt (it reports why; e.g. an invalid public key)."""


@attrs.define(eq=False)
class SealerStats:
    """Counters for metrics (``actrix_token_seal_*``)."""

    in_worker: int = 0
    fallback: int = 0
    worker_starts: int = 0

    def collect(self) -> Any:
        for name, doc, value in (
            ("worker", "Tokens sealed in the sealing process", self.in_worker),
            ("fallback", "Tokens sealed in the daemon itself", self.fallback),
            ("worker_starts", "Sealing processes started", self.worker_starts),
        ):
            metric: Metric = CounterMetricFamily(
                f"actrix_token_seal_{name}", doc, value=value
            )
            yield metric


@attrs.define(eq=False)
class _Job:
    public_key: bytes
    plaintext: bytes
    done: Deferred[bytes]


class _SealProcess(ChildProcess):
    """The daemon's end of one child's pipes."""

    def __init__(self, sealer: TokenSealer) -> None:
        super().__init__()
        self._sealer = sealer
        self.pending: dict[int, _Job] = {}
        self._buffer = b""

    def submit(self, job_id: int, job: _Job) -> None:
        self.pending[job_id] = job
        transport: Any = self.transport
        transport.write(
            seal_worker.encode_request(job_id, job.public_key, job.plaintext)
        )

    def outReceived(self, data: bytes) -> None:  # Twisted's name
        self._buffer += data
        if len(self._buffer) > MAX_ANSWER_BUFFER:
            self.kill()  # not what our child does: treat it as a crash
            return
        bodies, self._buffer = seal_worker.split_frames(self._buffer)
        for body in bodies:
            if len(body) < seal_worker.JOB.size:
                self.kill()
                return
            job_id, status = seal_worker.JOB.unpack_from(body)
            job = self.pending.pop(job_id, None)
            if job is None:
                continue
            payload = body[seal_worker.JOB.size :]
            if status == seal_worker.SEALED:
                self._sealer.stats.in_worker += 1
                job.done.callback(payload)
            else:
                job.done.errback(SealFailed(payload.decode("utf-8", "replace")))

    def errReceived(self, data: bytes) -> None:  # Twisted's name
        log.debug("sealing process stderr: {tail}", tail=data[-512:])

    def processEnded(self, reason: Failure) -> None:  # Twisted's name
        self.alive = False
        pending, self.pending = self.pending, {}
        self._sealer._worker_ended(self, list(pending.values()))
        self.ended()


class TokenSealer(Service):
    """``encrypt_token`` for the issuer: the child process first, else ``fallback``."""

    def __init__(
        self,
        reactor: Any,
        fallback: CryptoRunner,
        max_pending: int = MAX_PENDING,
        restart_delay: float = RESTART_DELAY,
        argv: list[str] | None = None,
    ) -> None:
        self._reactor = reactor
        self._fallback = fallback
        self._max_pending = max_pending
        self._restart_delay = restart_delay
        self._argv = argv or [sys.executable, "-m", WORKER_MODULE]
        self._worker: _SealProcess | None = None
        self._last_start: float | None = None
        self._ids = itertools.count(1)
        self.stats = SealerStats()
        self.setName("token-sealer")

    @property
    def worker_pid(self) -> int | None:
        """The running child's process id (tests, benchmarks)."""
        worker = self._worker
        if worker is None or worker.transport is None:
            return None
        pid: int | None = worker.transport.pid
        return pid

    def startService(self) -> None:
        super().startService()
        self._start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None or not worker.alive:
            return
        ended = worker.when_ended()
        if worker.transport is not None:
            worker.transport.closeStdin()  # the child answers what it has, then exits
        timer = self._reactor.callLater(STOP_TIMEOUT, worker.kill)
        await ended
        if timer.active():
            timer.cancel()

    def encrypt_token(self, public_key: bytes, claims: Claims) -> Deferred[bytes]:
        """The ECIES token of ``claims`` for ``public_key`` (see module doc)."""
        job = _Job(public_key, tokens.encode_claims(claims), Deferred())
        worker = self._worker
        if worker is None or not worker.alive:
            if self.running:
                self._start()
            worker = self._worker
        if (
            worker is None
            or not worker.alive
            or len(worker.pending) >= self._max_pending
            or len(public_key) > seal_worker.MAX_KEY
            or len(job.plaintext) > seal_worker.MAX_PLAINTEXT
        ):
            self._run_fallback(job)
        else:
            worker.submit(next(self._ids) & 0xFFFFFFFF, job)
        return job.done

    def _run_fallback(self, job: _Job) -> None:
        self.stats.fallback += 1
        d = self._fallback.run(tokens.ecies_encrypt, job.public_key, job.plaintext)
        d.chainDeferred(job.done)

    def _start(self) -> None:
        now = self._reactor.seconds()
        last = self._last_start
        if last is not None and now - last < self._restart_delay:
            return
        self._last_start = now
        worker = _SealProcess(self)
        env = {"PATH": os.defpath}
        if "PYTHONPATH" in os.environ:  # a source checkout run without installing
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        try:
            # cwd "/": nothing the child does may land in the daemon's directory.
            self._reactor.spawnProcess(
                worker, self._argv[0], self._argv, env=env, path="/"
            )
        except OSError as e:
            log.warn("cannot start the token sealing process: {error}", error=e)
            return
        self._worker = worker
        self.stats.worker_starts += 1

    def _worker_ended(self, worker: _SealProcess, unanswered: list[_Job]) -> None:
        if self._worker is worker:
            self._worker = None
        if self.running:
            log.warn(
                "token sealing process ended; {count} tokens sealed in the daemon",
                count=len(unanswered),
            )
        for job in unanswered:
            self._run_fallback(job)
