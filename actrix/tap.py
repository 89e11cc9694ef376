"""twistd plugin entry: ``Options`` and ``makeService``, the only place that wires.

:func:`build_root_service` is a plain function of (settings, reactor) so tests
build the same daemon twistd runs. It calls the per-service builders of
:mod:`actrix.assembly` in dependency order; services never import each other,
each is given the others through the small interfaces in
:mod:`actrix.core.interfaces`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from actrix.assembly import StartupError, Wiring
from actrix.assembly.actors import build_signaling
from actrix.assembly.ice import build_ice
from actrix.assembly.identity import (
    build_ais,
    build_ks,
    build_validator,
)
from actrix.assembly.operations import (
    add_http_listener,
    build_admin,
    build_discovery,
    build_revoker,
)
from actrix.assembly.rooms import build_rooms
from actrix.core import logging as actrix_logging
from actrix.core.config import (
    ConfigError,
    Settings,
    check_cluster,
    load_config,
)
from actrix.core.http import (
    HealthResource,
    SiteRoot,
)
from actrix.core.logthrottle import LogThrottle
from actrix.core.metrics import MetricsRegistry, MetricsResource
from actrix.core.realms import STORE as REALM_STORE
from actrix.core.realms import RealmCache
from actrix.core.revocations import RevocationList
from actrix.core.settings import EXAMPLE_SHARED_KEY, MAX_WORKERS
from actrix.core.storage import StorageError, open_store
from actrix.core.tls import ServerTLS, TLSConfigError
from actrix.root import ActrixService
from actrix.workers import SupervisorError, WorkerRole, decode_inherited

log = Logger()


class Options(usage.Options):
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", "/etc/actrix/config.toml", "TOML configuration file"],
        ["workers", None, None, "worker processes (overrides cluster.workers)"],
        ["worker", None, None, "internal: run as this worker of a supervisor"],
        ["inherit", None, None, "internal: listening sockets a worker adopts"],
    ]

    def postOptions(self) -> None:
        try:
            self.settings = load_config(Path(self["config"]))
        except ConfigError as e:
            raise usage.UsageError("\n".join(e.problems)) from e
        self.worker: WorkerRole | None = None
        if self["workers"] is not None:
            self._override_workers(self["workers"])
        if self["worker"] is not None:
            try:
                self.worker = WorkerRole(
                    int(self["worker"]), decode_inherited(self["inherit"] or "")
                )
            except ValueError as e:
                raise usage.UsageError(f"--worker/--inherit: {e}") from e

    def _override_workers(self, text: str) -> None:
        if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
            raise usage.UsageError(f"--workers: 1 to {MAX_WORKERS}")
        cluster = attrs.evolve(self.settings.cluster, workers=int(text))
        self.settings = attrs.evolve(self.settings, cluster=cluster)
        problems = check_cluster(self.settings)
        if problems:
            raise usage.UsageError("\n".join(problems))


def build_root_service(
    settings: Settings, reactor: Any, worker: WorkerRole | None = None
) -> ActrixService:
    """Assemble the daemon: databases migrated, services built, listeners added.

    A ``worker`` of a supervisor (:mod:`actrix.workers`) adopts the listening
    sockets it inherited instead of binding, and runs STUN/TURN only if it is
    worker 0.

    Raises:
        StartupError: a database, TLS file or service cannot be set up.
    """
    try:
        root = _build(settings, reactor, worker)
    except (StorageError, TLSConfigError) as e:
        raise StartupError(str(e)) from e
    if worker is not None:
        for name, fds in worker.sockets.items():
            try:
                root.listener(name).inherited = fds
            except KeyError as e:
                raise StartupError(f"worker: no listener {name!r} to adopt") from e
    return root


def _build(
    settings: Settings, reactor: Any, worker: WorkerRole | None
) -> ActrixService:
    root = ActrixService(reactor)
    realm_db = open_store(settings.storage, settings.sqlite_path, REALM_STORE, reactor)
    root.add_database(realm_db)
    realms = RealmCache(realm_db, reactor)
    realms.load_sync()
    root.add_background(realms.timer())
    revocations = RevocationList(realm_db, reactor)
    revocations.load_sync()
    realms.on_change(revocations.changed)
    pg = settings.storage.postgresql
    if pg is not None:
        from actrix.core.pg import ChangeFeed, notify_channel, schema_name

        channel = notify_channel(schema_name(pg, REALM_STORE))
        root.add_background(ChangeFeed(pg, channel, realms.changed, reactor))

    tls = None
    if settings.http_services_enabled and settings.uses_https:
        assert settings.bind.https is not None  # noqa: S101 (validated)
        tls = ServerTLS(settings.bind.https.cert, settings.bind.https.key)
        root.reload_hooks.append(tls.reload)

    wiring = Wiring(
        settings=settings,
        reactor=reactor,
        root=root,
        site=SiteRoot(),
        metrics=MetricsRegistry(),
        realms=realms,
        throttle=LogThrottle(reactor),
        tls=tls,
        realm_db=realm_db,
        worker=worker,
        revocations=revocations,
    )
    _build_services(wiring)
    wiring.site.mount(
        "health",
        HealthResource(
            reactor,
            settings.name,
            settings.enabled_services,
            wiring.health_checks,
            wiring.health_details,
        ),
    )
    wiring.site.mount(
        "metrics", MetricsResource(wiring.metrics, settings.observability.metrics)
    )
    build_admin(wiring)
    add_http_listener(wiring)
    build_discovery(wiring)
    return root


def _build_services(wiring: Wiring) -> None:
    """Build every enabled service in dependency order: KS, AIS, validator, the rest."""
    build_ks(wiring)
    build_ais(wiring)
    build_validator(wiring)
    build_ice(wiring)
    build_signaling(wiring)
    build_rooms(wiring)
    build_revoker(wiring)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor  # the one place the global reactor is named

    settings: Settings = options.settings
    worker: WorkerRole | None = options.worker
    for warning in settings.warnings:
        log.warn("{warning}", warning=warning)
    actrix_logging.set_level(settings.observability.level)
    if settings.observability.log.output == "file":
        actrix_logging.add_file_output(
            settings.observability.log.path,
            settings.observability.log.rotate,
            "actrix.log" if worker is None else f"actrix-w{worker.index}.log",
        )
    if settings.env != "dev" and settings.actrix_shared_key.value == EXAMPLE_SHARED_KEY:
        raise SystemExit(
            "actrix: actrix_shared_key is still the example value; set your own "
            "(openssl rand -hex 32)"
        )
    if worker is None and settings.cluster.workers > 1:
        from actrix.workers import build_supervisor

        try:
            return build_supervisor(settings, reactor)
        except SupervisorError as e:
            raise SystemExit(f"actrix: {e}") from e
    try:
        root = build_root_service(settings, reactor, worker)
    except StartupError as e:
        raise SystemExit(f"actrix: {e}") from e
    if worker is not None:
        from actrix.workers import become_worker

        become_worker(reactor)
    root.exit_on_listen_error = True
    if settings.source is not None:
        root.reload_hooks.append(_log_level_reloader(settings.source))
    reactor.callWhenRunning(root.install_signal_handlers)
    reactor.callWhenRunning(root.settle_heap)
    return root


def _log_level_reloader(path: Path) -> Any:
    """A reload hook that re-reads ``observability.filter_level`` from the file."""

    def reload_log_level() -> None:
        try:
            fresh = load_config(path)
        except ConfigError as e:
            log.error(
                "reload: {path} is invalid, keeping the running settings: {problems}",
                path=str(path),
                problems="; ".join(e.problems),
            )
            return
        actrix_logging.set_level(fresh.observability.level)
        log.info("reload: log level is now {level}", level=fresh.observability.level)

    return reload_log_level
