"""Builders of actr signaling and the actor directory it stands on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted.logger import Logger

from actrix.assembly import StartupError, Wiring
from actrix.core.storage import open_store
from actrix.workers import SUPERVISOR_ENV

if TYPE_CHECKING:
    from actrix.core.bus import Bus
    from actrix.core.directory import ActorDirectory
    from actrix.signaling.store import SignalingStore


log = Logger()


def build_signaling(wiring: Wiring) -> None:
    """Signaling (bit 1): ``/signaling/ws`` and ``/signaling/health``."""
    from twisted.application.internet import TimerService

    from actrix.core.config import ENABLE_SIGNALING
    from actrix.signaling.analyzer import ProcessAnalyzer
    from actrix.signaling.compat import CompatibilityCache
    from actrix.signaling.metrics import SignalingMetrics
    from actrix.signaling.protoc_pool import ProtocPool
    from actrix.signaling.protocol import SignalingFactory
    from actrix.signaling.resource import build_resource
    from actrix.signaling.service import SignalingService

    settings, reactor = wiring.settings, wiring.reactor
    config = settings.services.signaling
    if not settings.enabled(ENABLE_SIGNALING) or config is None:
        return
    if wiring.credential_validator is None:
        raise StartupError("signaling: no credential validator (KS) is configured")
    issuer = wiring.identity_issuer
    if issuer is None and config.ais is not None:
        from actrix.ais.client import IdentityClient

        client = IdentityClient(
            config.ais.endpoint,
            config.ais.timeout_seconds,
            shared_key=settings.actrix_shared_key,
            reactor=reactor,
        )
        wiring.root.add_background(client)
        issuer = client
    directory, bus, store = build_directory(wiring, config.heartbeat_timeout_secs)
    wiring.directory = directory
    metrics = SignalingMetrics()
    # Spec .proto text is compiled in bounded worker processes, never here.
    protoc_pool = ProtocPool(reactor)
    protoc_pool.setName("protoc")
    wiring.root.add_background(protoc_pool)
    service = SignalingService(
        clock=reactor,
        realms=wiring.realms,
        validator=wiring.credential_validator,
        issuer=issuer,
        store=store,
        compat=CompatibilityCache(
            reactor, ProcessAnalyzer(protoc_pool, reactor, threads=reactor)
        ),
        metrics=metrics,
        heartbeat_timeout=config.heartbeat_timeout_secs,
        max_acl_principals=config.max_acl_principals,
        reconnect_window=config.reconnect_window_secs,
        directory=directory,
        bus=bus,
    )
    wiring.root.add_session_service(service)
    wiring.signaling = service
    factory = SignalingFactory(service, config, reactor, reactor)
    for timer in service.timers():
        wiring.root.add_background(timer)
    wiring.root.add_background(TimerService(30.0, factory.prune_limits))
    wiring.site.mount("signaling", build_resource(factory))
    wiring.metrics.register(metrics)


def build_directory(
    wiring: Wiring, heartbeat_timeout: float
) -> tuple[ActorDirectory, Bus | None, SignalingStore | None]:
    """The actor directory: Redis when ``[redis]`` is configured, else local.

    The local one is the memory registry with its SQLite (or PostgreSQL)
    write-behind, loaded from the store before anything listens.
    """
    from actrix.signaling.local_directory import LocalDirectory
    from actrix.signaling.store import STORE, SignalingStore, load_sync

    settings, reactor = wiring.settings, wiring.reactor
    if settings.redis is not None:
        from actrix.core.redis_bus import RedisBus
        from actrix.core.redis_client import RedisClient, tls_options
        from actrix.core.redis_directory import RedisDirectory, new_node_id, node_name

        try:
            tls_options(settings.redis)  # a missing or bad CA file stops startup
        except (OSError, ValueError) as e:
            raise StartupError(f"redis.tls_ca: {e}") from e
        client = RedisClient(settings.redis, reactor)
        wiring.root.add_connection(client)
        worker = wiring.worker
        name = node_name(
            settings.cluster.node_id, None if worker is None else worker.index
        )
        node_id = new_node_id(name)
        redis_bus = RedisBus(client, node_id, reactor)
        wiring.root.add_connection(redis_bus)
        bus: Bus = redis_bus
        siblings = None
        supervisor = os.environ.get(SUPERVISOR_ENV)
        if worker is not None and supervisor and supervisor.isdigit():
            from actrix.core.sibling_bus import SiblingBus

            # Workers of one supervisor deliver to each other directly.
            bus = siblings = SiblingBus(redis_bus, int(supervisor), reactor)
            wiring.root.add_connection(siblings)
        log.info("signaling directory on Redis as node {node}", node=node_id)
        shared = RedisDirectory(
            client,
            reactor,
            node_id,
            heartbeat_timeout,
            settings.redis.key_prefix,
            name=settings.cluster.node_id
            and node_name(
                settings.cluster.node_id, None if worker is None else worker.index
            ),
        )
        from actrix.core.cluster_status import ClusterStatus

        status = ClusterStatus(client, shared, redis_bus, name, siblings)
        wiring.health_checks["redis"] = status.redis_up
        wiring.health_details["cluster"] = status.health
        wiring.metrics.register(status)
        return shared, bus, None
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    wiring.root.add_database(database)
    store = SignalingStore(database)
    local = LocalDirectory(reactor, store)
    rows, specs = load_sync(database, int(reactor.seconds()))
    local.load(rows, specs)
    return local, None, store
