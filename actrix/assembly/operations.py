"""Builders of what operators meet: revocation, the admin API and console, the
main HTTP listener and LAN discovery."""

from __future__ import annotations

from actrix.assembly import Wiring
from actrix.core.http import (
    SiteLimits,
    build_site,
)
from actrix.core.listen import TCPListener


def build_revoker(wiring: Wiring) -> None:
    """The Revoker (``root.revoker``, ``wiring.revoker``) over the services built.

    Revocations and realm changes from the change feed (the CLI, other
    processes) end sockets, allocations and room peers here within a second.
    """
    from actrix.core.revocation import Revoker
    from actrix.core.revocations import revocation_lifetime

    assert wiring.revocations is not None  # noqa: S101 (built first)
    revoker = Revoker(
        wiring.reactor,
        wiring.revocations,
        wiring.realms,
        revocation_lifetime(wiring.settings),
        sessions=wiring.signaling,
        allocations=wiring.turn,
        rooms=wiring.rooms,
    )
    wiring.realms.on_change(revoker.check_realms)
    wiring.root.add_background(revoker.timer())
    wiring.revoker = wiring.root.revoker = revoker


def build_admin(wiring: Wiring) -> None:
    """The admin API and console (``[admin]``): on ``bind.admin`` and/or the site."""
    from actrix.admin.service import admin_listener, build_admin

    settings, reactor = wiring.settings, wiring.reactor
    if not settings.admin.enabled:
        return
    if wiring.worker is not None and not wiring.worker.serves_admin:
        return  # worker 0 serves it (actrix.workers)
    turn = wiring.turn
    parts = build_admin(
        settings,
        reactor,
        realm_db=wiring.realm_db,
        realms=wiring.realms,
        collectors=wiring.metrics.collectors,
        revoker=wiring.revoker,
        directory=wiring.directory,
        signaling=wiring.signaling,
        rooms=wiring.rooms,
        turn=turn,
        draining=(lambda: bool(turn.shedding.draining)) if turn is not None else bool,
        reload_hook=wiring.root.reload,
    )
    wiring.root.add_database(parts.database)
    wiring.root.add_background(parts.service)
    wiring.metrics.register(parts.context.metrics)
    if settings.admin.on_main_site:
        wiring.site.mount("admin", parts.root)
    bind = settings.admin_bind
    if bind is not None:
        listener = admin_listener(bind, parts.root, reactor, wiring.throttle)
        if listener.tls is not None:
            wiring.root.reload_hooks.append(listener.tls.reload)
        wiring.root.add_listener(listener)


def add_http_listener(wiring: Wiring) -> None:
    bind = wiring.settings.site_bind
    if bind is None:
        return
    limits = SiteLimits(
        request_timeout=bind.request_timeout, idle_timeout=bind.idle_timeout
    )
    site = build_site(wiring.site, wiring.reactor, limits, wiring.throttle)
    listener = TCPListener(
        wiring.reactor,
        bind.ip,
        bind.port,
        site,
        tls=wiring.tls,
        max_per_ip=bind.max_connections_per_ip,
    )
    listener.setName("http")
    wiring.root.add_listener(listener)


def build_discovery(wiring: Wiring) -> None:
    """``[discovery] mdns``: announce the bound endpoints on the LAN (DNS-SD).

    Added last to the listeners: it starts once every port is bound and stops
    (withdrawing the announcements) with them, first. Under a supervisor only
    worker 0 announces: it serves STUN/TURN and shares every other port, so one
    announcement names them all (N workers would announce N renamed copies).
    """
    worker = wiring.worker
    if wiring.settings.discovery.mdns and (worker is None or worker.index == 0):
        from actrix.core.discovery import advertiser

        wiring.root.add_listener(advertiser(wiring.settings, wiring.root.listener))
