"""twistd plugin entry: ``Options`` and ``makeService``, the only place that wires.

:func:`build_root_service` is a plain function of (settings, reactor) so tests
build the same daemon twistd runs. Services never import each other; here each is
given the others through the small interfaces in :mod:`actrix.core.interfaces`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from actrix.core import logging as actrix_logging
from actrix.core.config import ConfigError, Settings, load_config
from actrix.core.http import HealthResource, SiteRoot, build_site
from actrix.core.interfaces import (
    CredentialValidator,
    IdentityIssuer,
    KeyProvider,
)
from actrix.core.listen import TCPListener
from actrix.core.metrics import MetricsRegistry, MetricsResource
from actrix.core.realms import MIGRATIONS as REALM_MIGRATIONS
from actrix.core.realms import REALMS_DB, RealmCache
from actrix.core.storage import StorageError, open_database
from actrix.core.tls import ServerTLS, TLSConfigError
from actrix.root import ActrixService

log = Logger()


class Options(usage.Options):
    optParameters: ClassVar[list[list[str]]] = [
        ["config", "c", "/etc/actrix/config.toml", "TOML configuration file"]
    ]

    def postOptions(self) -> None:
        try:
            self.settings = load_config(Path(self["config"]))
        except ConfigError as e:
            raise usage.UsageError("\n".join(e.problems)) from e


@attrs.define
class Wiring:
    """What the service builders share while the daemon is assembled."""

    settings: Settings
    reactor: Any
    root: ActrixService
    site: SiteRoot
    metrics: MetricsRegistry
    realms: RealmCache
    tls: ServerTLS | None = None
    key_provider: KeyProvider | None = None
    identity_issuer: IdentityIssuer | None = None
    credential_validator: CredentialValidator | None = None
    health_checks: dict[str, Any] = attrs.Factory(dict)


class StartupError(Exception):
    """The daemon cannot be built from this configuration (one-line message)."""


def build_root_service(settings: Settings, reactor: Any) -> ActrixService:
    """Assemble the daemon: databases migrated, services built, listeners added.

    Raises:
        StartupError: a database, TLS file or service cannot be set up.
    """
    try:
        return _build(settings, reactor)
    except (StorageError, TLSConfigError) as e:
        raise StartupError(str(e)) from e


def _build(settings: Settings, reactor: Any) -> ActrixService:
    root = ActrixService(reactor)
    realm_db = open_database(settings.sqlite_path, REALMS_DB, REALM_MIGRATIONS, reactor)
    root.add_database(realm_db)
    realms = RealmCache(realm_db, reactor)
    realms.load_sync(realm_db.path)
    root.add_background(realms.timer())

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
        tls=tls,
    )
    _build_services(wiring)
    wiring.site.mount(
        "health",
        HealthResource(
            reactor, settings.name, settings.enabled_services, wiring.health_checks
        ),
    )
    wiring.site.mount(
        "metrics", MetricsResource(wiring.metrics, settings.observability.metrics)
    )
    _add_http_listener(wiring)
    return root


def _build_services(wiring: Wiring) -> None:
    """Build every enabled service in dependency order: KS, AIS, validator, the rest."""
    _build_ks(wiring)
    _build_ais(wiring)
    _build_validator(wiring)
    _build_ice(wiring)
    _build_signaling(wiring)


# Each builder below owns one service: it reads ``wiring.settings``, checks its
# enable bit, creates the service's store/service/resource, mounts it on
# ``wiring.site`` or adds listeners to ``wiring.root``, registers its metrics
# collector on ``wiring.metrics`` and, where other services depend on it, sets
# ``wiring.key_provider`` / ``identity_issuer`` / ``credential_validator``.
# Imports stay inside each builder so a daemon loads only what it runs.


def _build_ks(wiring: Wiring) -> None:
    """KS (bit 16): ``/ks`` and the in-process KeyProvider."""


def _build_ais(wiring: Wiring) -> None:
    """AIS (bit 8): ``/ais`` and the in-process IdentityIssuer."""


def _build_validator(wiring: Wiring) -> None:
    """The CredentialValidator for signaling and TURN (local KS or KS client)."""


def _build_ice(wiring: Wiring) -> None:
    """STUN (bit 2) / TURN (bit 4) on ``bind.ice``: UDP, TCP and optional TLS."""


def _build_signaling(wiring: Wiring) -> None:
    """Signaling (bit 1): ``/signaling/ws`` and ``/signaling/health``."""


def _add_http_listener(wiring: Wiring) -> None:
    settings = wiring.settings
    if settings.uses_https:
        bind = settings.bind.https
        if bind is None:
            return
        ip, port = bind.ip, bind.port
    else:
        assert settings.bind.http is not None  # noqa: S101 (uses_https is False)
        ip, port = settings.bind.http.ip, settings.bind.http.port
    listener = TCPListener(
        wiring.reactor, ip, port, build_site(wiring.site), tls=wiring.tls
    )
    listener.setName("http")
    wiring.root.add_listener(listener)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor  # the one place the global reactor is named

    settings: Settings = options.settings
    for warning in settings.warnings:
        log.warn("{warning}", warning=warning)
    actrix_logging.set_level(settings.observability.level)
    if settings.observability.log.output == "file":
        actrix_logging.add_file_output(
            settings.observability.log.path, settings.observability.log.rotate
        )
    try:
        root = build_root_service(settings, reactor)
    except StartupError as e:
        raise SystemExit(f"actrix: {e}") from e
    reactor.callWhenRunning(root.install_signal_handlers)
    return root
