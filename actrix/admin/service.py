"""The admin API's pieces put together, and its background work.

:func:`build_admin` makes the store, sessions, limiter, time series and the
``/admin`` resource from the settings and the collaborators ``tap.py`` found;
:class:`AdminService` samples the time series every second and prunes the
audit log every hour (older than ``admin.audit_retention_days``, beyond
``admin.audit_max_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from actrix.admin.api import AdminApi
from actrix.admin.console import STATIC_DIR, AdminRoot, ListenerRoot
from actrix.admin.context import AdminContext, AdminMetrics
from actrix.admin.ports import Revoker
from actrix.admin.series import SeriesSampler, read_collectors
from actrix.admin.sessions import LoginLimiter, Sessions
from actrix.admin.store import STORE, AdminStore
from actrix.core.http import KleinGuard, SiteLimits, build_site
from actrix.core.listen import TCPListener
from actrix.core.logthrottle import LogThrottle
from actrix.core.settings import AdminBind, Settings
from actrix.core.storage import Database, StorageUnavailable, open_store
from actrix.core.tls import ServerTLS

log = Logger()

PRUNE_INTERVAL: Final = 3600.0


class AdminService(Service):
    """Time series sampling and audit pruning (started with the daemon)."""

    name = "admin"

    def __init__(self, context: AdminContext) -> None:
        self._ctx = context
        self._prune = LoopingCall(self._prune_tick)
        self._prune.clock = context.clock

    def startService(self) -> None:
        super().startService()
        self._ctx.started_at = self._ctx.clock.seconds()
        self._ctx.sampler.start()
        self._prune.start(PRUNE_INTERVAL, now=True)

    def stopService(self) -> None:
        super().stopService()
        self._ctx.sampler.stop()
        if self._prune.running:
            self._prune.stop()

    def _prune_tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.prune())

    async def prune(self) -> None:
        """Drop audit entries past the retention; errors are logged."""
        admin = self._ctx.settings.admin
        before = self._ctx.clock.seconds() - admin.audit_retention_days * 86400
        try:
            removed = await self._ctx.store.prune_audit(before, admin.audit_max_rows)
        except StorageUnavailable as e:
            log.warn("admin audit pruning: {error}", error=e)
            return
        except Exception:
            log.failure("pruning the admin audit log")
            return
        if removed:
            log.info("admin audit log: {n} old entries removed", n=removed)


def admin_listener(
    bind: AdminBind, root: AdminRoot, reactor: Any, throttle: LogThrottle
) -> TCPListener:
    """The ``bind.admin`` listener (named ``admin``): its own site, TLS if set."""
    tls = None
    if bind.cert is not None and bind.key is not None:
        tls = ServerTLS(bind.cert, bind.key)
    limits = SiteLimits(
        request_timeout=bind.request_timeout, idle_timeout=bind.idle_timeout
    )
    site = build_site(ListenerRoot(root), reactor, limits, throttle)
    listener = TCPListener(
        reactor,
        bind.ip,
        bind.port,
        site,
        tls=tls,
        max_per_ip=bind.max_connections_per_ip,
    )
    listener.setName("admin")
    return listener


@attrs.frozen
class AdminParts:
    """What :func:`build_admin` made: mount ``root``, run ``service``."""

    root: AdminRoot
    service: AdminService
    database: Database
    api: AdminApi
    context: AdminContext


def build_admin(
    settings: Settings,
    reactor: Any,
    *,
    realm_db: Database,
    realms: Any,
    collectors: Sequence[Any],
    revoker: Revoker | None,
    directory: Any = None,
    signaling: Any = None,
    rooms: Any = None,
    turn: Any = None,
    draining: Callable[[], bool] = lambda: False,
    reload_hook: Callable[[], None] = lambda: None,
    static_dir: Path = STATIC_DIR,
) -> AdminParts:
    """The admin API and console over an opened (and migrated) admin store.

    Raises:
        StorageError: the admin store cannot be opened or migrated.
    """
    config = settings.admin
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    store = AdminStore(database)
    sessions = Sessions(reactor, config.session_ttl, config.max_sessions)
    metrics = AdminMetrics(sessions=lambda: len(sessions))
    everything = [*collectors, metrics]
    context = AdminContext(
        settings=settings,
        clock=reactor,
        store=store,
        realm_db=realm_db,
        realms=realms,
        sessions=sessions,
        limiter=LoginLimiter(reactor, config.login_max_failures, config.login_window),
        sampler=SeriesSampler(reactor, lambda: read_collectors(everything)),
        metrics=metrics,
        directory=directory,
        signaling=signaling,
        rooms=rooms,
        turn=turn,
        draining=draining,
        reload_hook=reload_hook,
        started_at=reactor.seconds(),
    )
    api = AdminApi(context, revoker)
    root = AdminRoot(KleinGuard(api.app.resource()), static_dir)
    if store.active_token_count_sync() == 0:
        log.warn(
            "admin console enabled but no admin token exists; create one with: "
            "actrix admin-token create --name <you> -c {config}",
            config=str(settings.source or "<this config>"),
        )
    return AdminParts(root, AdminService(context), database, api, context)
