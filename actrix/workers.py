"""``workers = N``: a supervisor that owns the listening sockets and runs N workers.

The supervisor opens every listening socket once (the HTTP(S) site, the ICE
UDP group, TURN over TCP and TLS) and starts N worker processes, each a full
actrix daemon (``twistd actrix --worker I``) on its own reactor. A worker
inherits the sockets as file descriptors (``spawnProcess`` ``childFDs``) and
adopts them instead of binding. The supervisor never reads or writes a byte of
traffic: it is no hop.

Why descriptors and not ``SO_REUSEPORT`` for every worker:

* TCP: all workers accept from one queue. A busy worker accepts less, so load
  follows free CPU; with one reuseport socket per worker the kernel hashes
  connections to a worker whatever its load, and the connections waiting in a
  dying worker's own queue are reset.
* The sockets outlive every worker: a restarted worker adopts them again and
  nothing queued meanwhile is lost; no other process of the user can join
  the port group.
* TURN needs every datagram of one 5-tuple at the worker holding its
  allocation. The ICE UDP port already is a reuseport group of two sockets
  whose classic BPF program steers by the first byte (requests vs ChannelData,
  :mod:`actrix.turn.udp`); so STUN/TURN (UDP, TCP, TLS and the relay ports)
  run in worker 0 only, which keeps allocations, relay port ranges and
  quotas exactly as in one process. Measured: relaying costs 6.7 µs of CPU
  per datagram in one process, while per-user quotas counted in Redis would
  put Redis commands (22-98 µs of client CPU each here) on every Allocate,
  whose whole cycle costs 106 µs today (README, "Scaling out").

The admin API and console (``[bind.admin]``) and rooms (``[bind.rooms]``) are
served by worker 0 alone, for the same reason as TURN: login sessions, the
failed-login limiter, metrics time series and room membership live in the
process that serves them.

Workers start one after another (each runs the store migrations before it
listens, so they never race) and each reports ``ready`` on descriptor 3. A
worker that dies is restarted after a delay doubling from 1 s to 30 s while it
keeps dying young, with one log line per death. SIGTERM stops the workers one
at a time, highest index first (each closes its sessions), then the supervisor
exits 0. A worker whose supervisor dies gets SIGTERM (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from actrix.core.config import ENABLE_ROOMS, ENABLE_STUN, ENABLE_TURN, Settings

log = Logger()

# The worker's command: this Python's twistd, whatever script started us.
TWISTD: Final = "from twisted.scripts.twistd import run; run()"
READY_FD: Final = 3
FIRST_SOCKET_FD: Final = 4
READY_LINE: Final = b"ready\n"
STOP_GRACE: Final = 10.0
MIN_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 30.0
# A worker that lived this long before dying is restarted after MIN_BACKOFF.
HEALTHY_UPTIME: Final = 30.0
SUPERVISOR_ENV: Final = "ACTRIX_SUPERVISOR_PID"
# Listeners whose socket only worker 0 gets (besides STUN/TURN's ``ice-*``):
# the admin console keeps its login sessions, and rooms their membership, in
# the process that serves them.
WORKER_0_ONLY: Final = frozenset({"admin", "rooms"})
_PR_SET_PDEATHSIG: Final = 1


class SupervisorError(Exception):
    """The supervisor cannot start (a socket cannot be bound)."""


def _tcp_socket(interface: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_sockets(settings: Settings) -> dict[str, list[socket.socket]]:
    """Every listening socket of ``settings``, by the name of its listener.

    The same listeners :func:`actrix.tap.build_root_service` builds: ``http``,
    ``admin``, ``rooms``, ``ice-udp`` (one or two sockets), ``ice-tcp``,
    ``ice-tls``.

    Raises:
        SupervisorError: an address cannot be bound (names the listener).
    """
    from actrix.turn.udp import open_ice_sockets

    opened: dict[str, list[socket.socket]] = {}
    plan: list[tuple[str, str, int, bool]] = []
    bind = settings.site_bind
    if settings.http_services_enabled and bind is not None:
        plan.append(("http", bind.ip, bind.port, False))
    admin = settings.admin_bind
    if admin is not None:
        plan.append(("admin", admin.ip, admin.port, False))
    rooms = settings.bind.rooms
    if rooms is not None and settings.enabled(ENABLE_ROOMS):
        plan.append(("rooms", rooms.ip, rooms.port, False))
    ice = settings.bind.ice
    if settings.enabled(ENABLE_STUN) or settings.enabled(ENABLE_TURN):
        plan.append(("ice-udp", ice.ip, ice.port, True))
        if ice.tcp:
            plan.append(("ice-tcp", ice.ip, ice.port, False))
        if ice.tls_port is not None and ice.cert is not None and ice.key is not None:
            plan.append(("ice-tls", ice.ip, ice.tls_port, False))
    try:
        for name, interface, port, udp in plan:
            try:
                opened[name] = (
                    open_ice_sockets(interface, port)
                    if udp
                    else [_tcp_socket(interface, port)]
                )
            except OSError as e:
                raise SupervisorError(
                    f"{name}: cannot listen on {interface}:{port}: {e.strerror or e}"
                ) from e
    except SupervisorError:
        close_sockets(opened)
        raise
    return opened


def close_sockets(opened: dict[str, list[socket.socket]]) -> None:
    for sockets in opened.values():
        for sock in sockets:
            sock.close()


def encode_inherited(mapping: Mapping[str, Sequence[int]]) -> str:
    """``--inherit`` text: ``name=fd[,fd];name=fd``."""
    return ";".join(
        f"{name}={','.join(str(fd) for fd in fds)}" for name, fds in mapping.items()
    )


def decode_inherited(text: str) -> dict[str, tuple[int, ...]]:
    """Inverse of :func:`encode_inherited`.

    Raises:
        ValueError: malformed text.
    """
    mapping: dict[str, tuple[int, ...]] = {}
    for part in filter(None, text.split(";")):
        name, sep, fds = part.partition("=")
        if not sep or not name:
            raise ValueError(f"bad --inherit entry {part!r}")
        mapping[name] = tuple(int(fd) for fd in fds.split(","))
    return mapping


@attrs.frozen
class WorkerRole:
    """What a worker process is told by its supervisor."""

    index: int
    sockets: dict[str, tuple[int, ...]]

    @property
    def serves_ice(self) -> bool:
        """STUN/TURN run in worker 0 only (see the module docstring)."""
        return self.index == 0

    @property
    def serves_admin(self) -> bool:
        """The admin API and console (its own listener) run in worker 0 only."""
        return self.index == 0

    @property
    def serves_rooms(self) -> bool:
        """Rooms (on their own listener, ``[bind.rooms]``) run in worker 0 only."""
        return self.index == 0


def become_worker(reactor: Any) -> None:
    """In a worker: die with the supervisor, and say ``ready`` once started."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if supervisor is not None and str(os.getppid()) != supervisor:
        # The supervisor died before prctl took effect.
        raise SystemExit("actrix: worker without its supervisor")

    def ready() -> None:
        with contextlib.suppress(OSError):
            os.write(READY_FD, READY_LINE)
            os.close(READY_FD)

    # twistd starts the application when the reactor runs; report after that.
    reactor.callWhenRunning(reactor.callLater, 0, ready)


def twistd_logger_args(argv: Sequence[str]) -> list[str]:
    """The ``--logger`` option the supervisor was started with, for its workers."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "actrix":
            break
        if arg.startswith("--logger="):
            return [arg]
        if arg == "--logger" and i + 1 < len(args):
            return [arg, args[i + 1]]
    return []


class _Worker(ProcessProtocol):
    """One worker process: its readiness and its end."""

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.started_at = 0.0
        self.pid = 0

    def connectionMade(self) -> None:
        transport = self.transport
        self.pid = 0 if transport is None else int(transport.pid or 0)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == READY_FD and READY_LINE in data and not self.ready.called:
            self.ready.callback(None)

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(reason)
        self.ended.callback(None)
        self.supervisor.ended(self, reason)

    def signal(self, signum: int) -> None:
        transport = self.transport
        if transport is not None:
            with contextlib.suppress(ProcessExitedAlready):
                transport.signalProcess(signum)


def describe_end(reason: Failure) -> str:
    value: Any = reason.value
    if getattr(value, "signal", None):
        return f"killed by signal {value.signal}"
    return f"exited with status {getattr(value, 'exitCode', None)}"


class WorkerSupervisor(Service):
    """Owns the sockets; starts, restarts and stops the workers."""

    def __init__(
        self,
        settings: Settings,
        reactor: Any,
        twistd_args: Sequence[str] = (),
    ) -> None:
        if settings.source is None:
            raise SupervisorError("workers: the settings have no config file")
        self._settings = settings
        self._reactor = reactor
        self._twistd_args = list(twistd_args)
        self._count = settings.cluster.workers
        self._sockets: dict[str, list[socket.socket]] = {}
        self.workers: dict[int, _Worker] = {}
        self._backoff: dict[int, float] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False
        self.failed = False
        self.setName("workers")

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.open()

    def open(self) -> None:
        """Bind every listening socket (once).

        Raises:
            SupervisorError: an address cannot be bound.
        """
        if self._sockets:
            return
        self._sockets = open_sockets(self._settings)
        for name, sockets in self._sockets.items():
            log.info(
                "supervisor listening for {name} on {address}",
                name=name,
                address=sockets[0].getsockname(),
            )

    def startService(self) -> None:
        self.open()
        super().startService()
        Deferred.fromCoroutine(self._start_all()).addErrback(
            lambda f: log.failure("while starting the workers", f)
        )

    async def _start_all(self) -> None:
        for index in range(self._count):
            if self._stopping:
                return
            worker = self._spawn(index)
            try:
                await worker.ready
            except Exception:
                if not self._stopping:
                    log.error("worker {index} failed to start; stopping", index=index)
                    self.failed = True
                    self._reactor.stop()
                return
        log.info("{count} workers running", count=self._count)

    def _argv(self, index: int, inherited: dict[str, list[int]]) -> list[str]:
        source = self._settings.source
        return [
            sys.executable,
            "-c",
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            *self._twistd_args,
            "actrix",
            "-c",
            str(source),
            "--worker",
            str(index),
            "--inherit",
            encode_inherited(inherited),
        ]

    def _spawn(self, index: int) -> _Worker:
        child_fds: dict[int, int | str] = {0: "w", 1: 1, 2: 2, READY_FD: "r"}
        inherited: dict[str, list[int]] = {}
        fd = FIRST_SOCKET_FD
        for name, sockets in self._sockets.items():
            worker_0_only = name in WORKER_0_ONLY or name.startswith("ice-")
            if worker_0_only and index != 0:
                continue
            inherited[name] = []
            for sock in sockets:
                child_fds[fd] = sock.fileno()
                inherited[name].append(fd)
                fd += 1
        worker = _Worker(self, index)
        env = dict(os.environ)
        env[SUPERVISOR_ENV] = str(os.getpid())
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            self._argv(index, inherited),
            env=env,
            childFDs=child_fds,
        )
        worker.started_at = self._reactor.seconds()
        self.workers[index] = worker
        log.info("worker {index} started (pid {pid})", index=index, pid=worker.pid)
        return worker

    def ended(self, worker: _Worker, reason: Failure) -> None:
        """A worker process ended: restart it unless we are stopping."""
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self._stopping or not self.running:
            return
        if not worker.ready.called or self.failed:
            return  # _start_all reports it
        lived = self._reactor.seconds() - worker.started_at
        delay = self._backoff.get(worker.index, MIN_BACKOFF / 2) * 2
        if lived >= HEALTHY_UPTIME:
            delay = MIN_BACKOFF
        delay = min(delay, MAX_BACKOFF)
        self._backoff[worker.index] = delay
        log.warn(
            "worker {index} (pid {pid}) {how}; restarting it in {delay:.0f} s",
            index=worker.index,
            pid=worker.pid,
            how=describe_end(reason),
            delay=delay,
        )
        self._restarts[worker.index] = self._reactor.callLater(
            delay, self._restart, worker.index
        )

    def _restart(self, index: int) -> None:
        self._restarts.pop(index, None)
        if not self._stopping:
            self._spawn(index)

    def forward(self, signum: int) -> None:
        """Pass a signal (SIGHUP: reload) on to every worker."""
        for worker in list(self.workers.values()):
            worker.signal(signum)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        for index in sorted(self.workers, reverse=True):
            worker = self.workers.get(index)
            if worker is None:
                continue
            worker.signal(signal.SIGTERM)
            ended = worker.ended
            ended.addTimeout(STOP_GRACE, self._reactor)
            try:
                await ended
            except Exception:
                log.warn(
                    "worker {index} (pid {pid}) did not stop in {grace:.0f} s; killed",
                    index=index,
                    pid=worker.pid,
                    grace=STOP_GRACE,
                )
                worker.signal(signal.SIGKILL)
        close_sockets(self._sockets)
        self._sockets = {}
        log.info("all workers stopped")


def build_supervisor(settings: Settings, reactor: Any) -> WorkerSupervisor:
    """``workers > 1`` under twistd: the supervisor, its sockets bound now.

    Binding here (not when twistd starts the service) ends startup with one
    line for a busy port instead of a traceback. SIGTERM/SIGINT stop the
    workers in order, SIGHUP is passed on, and a worker that fails at its
    first start makes the process exit with status 1.

    Raises:
        SupervisorError: an address cannot be bound.
    """
    supervisor = WorkerSupervisor(settings, reactor, twistd_logger_args(sys.argv))
    supervisor.open()

    def install_signal_handlers() -> None:
        def stop(signum: int, frame: object) -> None:
            log.info("received signal {signum}, stopping the workers", signum=signum)
            reactor.callFromThread(reactor.stop)

        def reload(signum: int, frame: object) -> None:
            reactor.callFromThread(supervisor.forward, signal.SIGHUP)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def exit_status() -> None:
        if supervisor.failed:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

    reactor.callWhenRunning(install_signal_handlers)
    reactor.addSystemEventTrigger("after", "shutdown", exit_status)
    return supervisor
