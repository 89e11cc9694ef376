"""``ActrixService``: the root MultiService that owns listeners, sessions and databases.

Start order: background timers, then session-owning services, then listeners.
Stop order is written out (MultiService would stop children concurrently):
listeners first (no new work), then sessions (close WebSockets and relays), then
timers, then the databases (nothing queries them any more).
"""

from __future__ import annotations

import gc
import signal
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from actrix.core.listen import ListenError
from actrix.core.storage import Database

if TYPE_CHECKING:
    from actrix.core.revocation import Revoker

log = Logger()

STOP_TIMEOUT = 4.0


class ActrixService(MultiService):
    """The whole daemon; build it with :func:`actrix.tap.build_root_service`."""

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self._reactor = reactor
        # Connections to shared state (Redis) start first and stop last: the
        # timers and sessions that use them are stopped by then.
        self.connections = MultiService()
        self.connections.setName("connections")
        self.background = MultiService()
        self.background.setName("background")
        self.sessions = MultiService()
        self.sessions.setName("sessions")
        self.listeners = MultiService()
        self.listeners.setName("listeners")
        for group in (self.connections, self.background, self.sessions, self.listeners):
            group.setServiceParent(self)
        self.databases: list[Database] = []
        self.reload_hooks: list[Any] = []
        # Set by makeService: under twistd a bind failure ends the process with
        # one line instead of a traceback; tests get the exception.
        self.exit_on_listen_error = False
        # Revokes actors and ends suspended realms (set by tap; the admin API's).
        self.revoker: Revoker | None = None
        # The one stop in progress or done: stopping twice (a second SIGTERM,
        # a test's cleanup after its own stop) waits for it instead of
        # stopping every service again.
        self._stopping: Deferred[None] | None = None

    def add_listener(self, service: Service) -> None:
        service.setServiceParent(self.listeners)

    def add_session_service(self, service: IService) -> None:
        service.setServiceParent(self.sessions)

    def add_background(self, service: IService) -> None:
        service.setServiceParent(self.background)

    def add_connection(self, service: IService) -> None:
        """A client of shared state, stopped after everything that uses it."""
        service.setServiceParent(self.connections)

    def add_database(self, database: Database) -> None:
        self.databases.append(database)

    def listener(self, name: str) -> Any:
        """A listener by name (tests use ``.bound_port``)."""
        return self.listeners.getServiceNamed(name)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the daemon (exit 0); SIGHUP runs the reload hooks.

        twistd's own handlers make the process exit by re-raising the signal,
        so a clean systemd stop would look like a failure; ours stop the
        reactor normally instead. Call once the reactor runs.
        """
        reactor = self._reactor

        def stop(signum: int, frame: object) -> None:
            log.info("received signal {signum}, shutting down", signum=signum)
            reactor.callFromThread(reactor.stop)

        def reload(signum: int, frame: object) -> None:
            reactor.callFromThread(self.reload)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def settle_heap(self) -> None:
        """Take the objects built at startup out of the garbage collector's walks.

        Modules, protobuf descriptors, services and caches never become garbage,
        yet every full collection walks them all (about 100 000 objects, tens of
        milliseconds with the reactor stalled: a visible p99 at a steady relay
        rate). One collection, then ``gc.freeze``, leaves later collections only
        the objects made since. makeService calls this once the reactor runs.
        """
        gc.collect()
        gc.freeze()

    def reload(self) -> None:
        """Re-read what can change without a restart (TLS certificates, log level)."""
        log.info("SIGHUP: reloading; other config changes need a restart")
        for hook in self.reload_hooks:
            try:
                hook()
            except Exception:
                log.failure("reload hook {hook!r} failed", hook=hook)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            # One line and a non-zero exit instead of a traceback from twistd.
            for db in self.databases:
                db.close()
            if not self.exit_on_listen_error:
                raise
            sys.stderr.write(f"actrix: {e}\n")
            raise SystemExit(1) from e

    def stopService(self) -> Deferred[None]:
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
        waiter: Deferred[None] = Deferred()

        def done(result: object) -> object:
            waiter.callback(None)
            return result

        self._stopping.addBoth(done)
        return waiter

    async def _stop(self) -> None:
        Service.stopService(self)
        groups = (self.listeners, self.sessions, self.background, self.connections)
        for group in groups:
            d = group.stopService()
            if d is not None:
                d.addTimeout(STOP_TIMEOUT, self._reactor)
                try:
                    await d
                except Exception:
                    log.failure("while stopping {group}", group=group.name)
        for db in self.databases:
            db.close()
        log.info("actrix stopped")
