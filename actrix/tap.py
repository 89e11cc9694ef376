"""twistd plugin entry: ``Options`` and ``makeService``, the only place that wires.

:func:`build_root_service` is a plain function of (settings, reactor) so tests
build the same daemon twistd runs. Services never import each other; here each is
given the others through the small interfaces in :mod:`actrix.core.interfaces`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from actrix.core import logging as actrix_logging
from actrix.core.auth import NonceVerifier
from actrix.core.config import ConfigError, KsClientConfig, Settings, load_config
from actrix.core.http import (
    HealthResource,
    KleinGuard,
    SiteLimits,
    SiteRoot,
    build_site,
)
from actrix.core.interfaces import (
    CredentialValidator,
    IdentityIssuer,
    KeyProvider,
)
from actrix.core.listen import TCPListener
from actrix.core.logthrottle import LogThrottle
from actrix.core.metrics import MetricsRegistry, MetricsResource
from actrix.core.proxyproto import ProxyPolicy
from actrix.core.realms import STORE as REALM_STORE
from actrix.core.realms import RealmCache
from actrix.core.settings import EXAMPLE_SHARED_KEY, turn_drain_flag
from actrix.core.storage import StorageError, open_store
from actrix.core.tls import ServerTLS, TLSConfigError
from actrix.root import ActrixService

if TYPE_CHECKING:
    from actrix.core.bus import Bus
    from actrix.core.directory import ActorDirectory
    from actrix.ks.client import KeyServerClient
    from actrix.signaling.store import SignalingStore

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
    throttle: LogThrottle
    tls: ServerTLS | None = None
    verifier: NonceVerifier | None = None
    ks_clients: dict[KsClientConfig, KeyServerClient] = attrs.Factory(dict)
    key_provider: KeyProvider | None = None
    identity_issuer: IdentityIssuer | None = None
    credential_validator: CredentialValidator | None = None
    health_checks: dict[str, Any] = attrs.Factory(dict)
    health_details: dict[str, Any] = attrs.Factory(dict)


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
    realm_db = open_store(settings.storage, settings.sqlite_path, REALM_STORE, reactor)
    root.add_database(realm_db)
    realms = RealmCache(realm_db, reactor)
    realms.load_sync()
    root.add_background(realms.timer())
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
    _add_http_listener(wiring)
    return root


def _build_services(wiring: Wiring) -> None:
    """Build every enabled service in dependency order: KS, AIS, validator, the rest."""
    _build_ks(wiring)
    _build_ais(wiring)
    _build_validator(wiring)
    _build_ice(wiring)
    _build_signaling(wiring)
    _build_rooms(wiring)


# Each builder below owns one service: it reads ``wiring.settings``, checks its
# enable bit, creates the service's store/service/resource, mounts it on
# ``wiring.site`` or adds listeners to ``wiring.root``, registers its metrics
# collector on ``wiring.metrics`` and, where other services depend on it, sets
# ``wiring.key_provider`` / ``identity_issuer`` / ``credential_validator``.
# Imports stay inside each builder so a daemon loads only what it runs.


def _nonce_verifier(wiring: Wiring) -> NonceVerifier:
    """The one ``nonce.db`` verifier KS and AIS share (a nonce is used once on both).

    Built by whichever of them comes first, once its own setup has succeeded,
    and handed to the other.
    """
    from actrix.core.nonces import STORE, NonceStore, cleanup_timer

    if wiring.verifier is None:
        settings, reactor = wiring.settings, wiring.reactor
        database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
        wiring.root.add_database(database)
        store = NonceStore(database)
        wiring.root.add_background(cleanup_timer(store, reactor))
        wiring.verifier = NonceVerifier(
            settings.actrix_shared_key.encode(), store, reactor
        )
    return wiring.verifier


def _ks_client(wiring: Wiring, config: KsClientConfig) -> KeyServerClient:
    """The daemon's client for a ``dependencies.ks`` table, built on first use.

    AIS and the credential validator often name the same remote KS; they share
    one client and its connection pool.
    """
    from actrix.ks.client import KeyServerClient

    client = wiring.ks_clients.get(config)
    if client is None:
        client = KeyServerClient.from_config(
            config, wiring.settings.actrix_shared_key.encode(), wiring.reactor
        )
        if len(wiring.ks_clients) > 0:  # service names must stay unique
            client.setName(f"{client.name} #{len(wiring.ks_clients) + 1}")
        client.setServiceParent(wiring.root.background)
        wiring.ks_clients[config] = client
    return client


def _build_ks(wiring: Wiring) -> None:
    """KS (bit 16): ``/ks`` and the in-process KeyProvider."""
    from actrix.core.config import ENABLE_KS
    from actrix.ks.kek import KekError, load_kek
    from actrix.ks.metrics import KsMetrics
    from actrix.ks.resource import KsResource
    from actrix.ks.service import KeyService, check_kek_sync
    from actrix.ks.store import STORE, KeyStore

    settings = wiring.settings
    config = settings.services.ks
    if not settings.enabled(ENABLE_KS) or config is None:
        return
    try:
        kek = load_kek(config)
    except KekError as e:
        raise StartupError(str(e)) from e
    database = open_store(settings.storage, settings.sqlite_path, STORE, wiring.reactor)
    try:
        check_kek_sync(database, kek)
    except (KekError, StorageError) as e:
        database.close()
        raise StartupError(str(e)) from e
    wiring.root.add_database(database)
    metrics = KsMetrics()
    service = KeyService(
        KeyStore(database),
        wiring.reactor,
        key_ttl_seconds=config.storage.key_ttl_seconds,
        tolerance_seconds=config.tolerance_seconds,
        kek=kek,
        metrics=metrics,
    )
    wiring.root.add_background(service.cleanup_timer(config.cleanup_interval_seconds))
    wiring.metrics.register(metrics)
    resource = KsResource(
        service, _nonce_verifier(wiring), wiring.reactor, metrics, wiring.throttle
    )
    wiring.site.mount("ks", KleinGuard(resource.app.resource()))
    wiring.key_provider = service


def _build_ais(wiring: Wiring) -> None:
    """AIS (bit 8): ``/ais`` and the in-process IdentityIssuer."""
    from actrix.ais.metrics import AisMetrics
    from actrix.ais.ratelimit import IpRateLimiter
    from actrix.ais.resource import AisResource
    from actrix.ais.serials import SerialGenerator
    from actrix.ais.service import IdentityIssuer
    from actrix.ais.store import STORE, CurrentKeyStore
    from actrix.core.config import ENABLE_AIS
    from actrix.core.credentials import choose_crypto
    from actrix.core.sealer import TokenSealer

    settings = wiring.settings
    config = settings.services.ais
    if not settings.enabled(ENABLE_AIS) or config is None:
        return
    reactor = wiring.reactor
    keys: KeyProvider | None = wiring.key_provider
    if config.ks is not None:
        keys = _ks_client(wiring, config.ks)
    if keys is None:
        raise StartupError("services.ais: no KS (local KS off, no dependencies.ks)")
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    wiring.root.add_database(database)
    metrics = AisMetrics()
    crypto = choose_crypto(reactor, wiring.root.background)
    # Tokens are sealed in a child process (the reactor's core stays free);
    # the crypto runner takes over whenever that process cannot.
    sealer = TokenSealer(reactor, crypto)
    wiring.root.add_background(sealer)
    wiring.metrics.register(sealer.stats)
    issuer = IdentityIssuer(
        keys,
        CurrentKeyStore(database),
        reactor,
        SerialGenerator(lambda: int(reactor.seconds() * 1000)),
        token_ttl_secs=config.token_ttl_secs,
        heartbeat_interval_secs=config.signaling_heartbeat_interval_secs,
        crypto=crypto,
        metrics=metrics,
        seal=sealer.encrypt_token,
    )
    wiring.root.add_background(issuer.refresh_timer())
    wiring.metrics.register(metrics)
    verifier = _nonce_verifier(wiring)
    limiter = IpRateLimiter(
        reactor, config.register_rate_per_second, config.register_burst
    )
    resource = AisResource(issuer, verifier, limiter, metrics, wiring.throttle)
    wiring.site.mount("ais", KleinGuard(resource.app.resource()))
    wiring.health_checks["ais"] = lambda: issuer.current is not None
    wiring.identity_issuer = issuer


def _build_validator(wiring: Wiring) -> None:
    """The CredentialValidator for signaling and TURN (local KS or KS client)."""
    from actrix.ais.service import IdentityIssuer
    from actrix.core.config import ENABLE_SIGNALING, ENABLE_TURN
    from actrix.core.credentials import TokenValidator, choose_crypto

    settings = wiring.settings
    if not (settings.enabled(ENABLE_SIGNALING) or settings.enabled(ENABLE_TURN)):
        return
    signaling, ais = settings.services.signaling, settings.services.ais
    # An explicit signaling dependency wins; then the local KS; then AIS's KS.
    remote = signaling.ks if signaling is not None else None
    if remote is None and wiring.key_provider is None and ais is not None:
        remote = ais.ks
    keys: KeyProvider | None = wiring.key_provider
    if remote is not None:
        keys = _ks_client(wiring, remote)
    if keys is None:
        log.warn("no KS configured: identity credentials cannot be validated")
        return
    validator = TokenValidator(
        keys,
        wiring.reactor,
        crypto=choose_crypto(wiring.reactor, wiring.root.background),
    )
    wiring.metrics.register(validator.stats)
    wiring.credential_validator = validator
    issuer = wiring.identity_issuer
    if isinstance(issuer, IdentityIssuer) and issuer.keys is keys:
        # Same KS, same key ids: tokens issued here are known without ECIES.
        issuer.on_issued = validator.remember


def _build_ice(wiring: Wiring) -> None:
    """STUN (bit 2) / TURN (bit 4) on ``bind.ice``: UDP, TCP and optional TLS."""
    from actrix.core.config import ENABLE_STUN, ENABLE_TURN
    from actrix.core.listen import UDPListener

    settings = wiring.settings
    turn_on = settings.enabled(ENABLE_TURN)
    if not (turn_on or settings.enabled(ENABLE_STUN)):
        return
    from actrix.stun.protocol import BindingResponder, StunTcpFactory, StunUdpProtocol
    from actrix.turn.metrics import TurnMetrics

    ice, turn, reactor = settings.bind.ice, settings.turn, wiring.reactor
    metrics = TurnMetrics()
    wiring.metrics.register(metrics)
    responder = BindingResponder(turn.software, metrics)
    udp: Any
    streams: Any
    if turn_on:
        from actrix.turn.auth import TurnAuth
        from actrix.turn.protocol import TurnUdpProtocol
        from actrix.turn.relay import relay_opener
        from actrix.turn.service import TurnService
        from actrix.turn.tcp import TurnStreamFactory
        from actrix.turn.udp import IceUDPListener

        auth = TurnAuth(
            reactor,
            turn.realm,
            users=turn.users,
            rest_secrets=turn.rest_secrets,
            validator=wiring.credential_validator,
            realms=wiring.realms,
        )

        service = TurnService(
            turn,
            reactor,
            auth,
            metrics,
            relay_opener(reactor),
            relay_bind_ip="0.0.0.0" if ":" in ice.ip else ice.ip,  # noqa: S104
            software=turn.software,
            drain_probe=turn_drain_flag(wiring.settings.sqlite_path).exists,
            tcp_openers=(
                lambda ip, port, factory: reactor.listenTCP(
                    port, factory, interface=ip
                ),
                lambda host, port, factory, bind_ip, timeout: reactor.connectTCP(
                    host, port, factory, timeout=timeout, bindAddress=(bind_ip, 0)
                ),
            ),
        )
        wiring.root.add_session_service(service)
        wiring.health_details["turn"] = service.health
        udp = TurnUdpProtocol(service, responder)

        def streams(name: str) -> Any:
            return TurnStreamFactory(
                service, responder, name, reactor, turn.stream_idle_timeout
            )

    else:
        udp = StunUdpProtocol(responder, metrics)

        def streams(name: str) -> Any:
            return StunTcpFactory(responder, metrics, reactor, turn.stream_idle_timeout)

    listener = IceUDPListener if turn_on else UDPListener
    listeners: list[Any] = [listener(reactor, ice.ip, ice.port, udp)]
    listeners[0].setName("ice-udp")
    proxy = (
        ProxyPolicy(ice.proxy_trusted, metrics, reactor, wiring.throttle)
        if ice.tcp_proxy_protocol or ice.tls_proxy_protocol
        else None
    )
    if ice.tcp:
        tcp = TCPListener(
            reactor,
            ice.ip,
            ice.port,
            streams("tcp"),
            proxy=proxy if ice.tcp_proxy_protocol else None,
        )
        tcp.setName("ice-tcp")
        listeners.append(tcp)
    if ice.tls_port is not None and ice.cert is not None and ice.key is not None:
        ice_tls = ServerTLS(ice.cert, ice.key)
        wiring.root.reload_hooks.append(ice_tls.reload)
        tls = TCPListener(
            reactor,
            ice.ip,
            ice.tls_port,
            streams("tls"),
            tls=ice_tls,
            proxy=proxy if ice.tls_proxy_protocol else None,
        )
        tls.setName("ice-tls")
        listeners.append(tls)
    for listener in listeners:
        wiring.root.add_listener(listener)


def _build_signaling(wiring: Wiring) -> None:
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
    directory, bus, store = _build_directory(wiring, config.heartbeat_timeout_secs)
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
    factory = SignalingFactory(service, config, reactor, reactor)
    for timer in service.timers():
        wiring.root.add_background(timer)
    wiring.root.add_background(TimerService(30.0, factory.prune_limits))
    wiring.site.mount("signaling", build_resource(factory))
    wiring.metrics.register(metrics)


def _build_rooms(wiring: Wiring) -> None:
    """Rooms (bit 32): ``/rooms/{ws,bin,health,demo}`` and ``/api/*``."""
    from twisted.application.internet import TimerService

    from actrix.core.config import ENABLE_ROOMS, ENABLE_STUN, ENABLE_TURN, RoomsConfig
    from actrix.core.ice import IceServerSource
    from actrix.core.websocket import UpgradeOnly
    from actrix.rooms.binary_codec import MAX_FRAME
    from actrix.rooms.binary_endpoint import BinaryRoomConnection
    from actrix.rooms.grants import Authorizer
    from actrix.rooms.json_codec import loads
    from actrix.rooms.json_endpoint import JsonRoomConnection
    from actrix.rooms.protocol import RoomEdge, RoomFactory, RoomSessions
    from actrix.rooms.resource import ApiResource, RoomsRoot
    from actrix.rooms.service import RoomService
    from actrix.rooms.store import STORE, RoomStore, load_sync

    settings, reactor = wiring.settings, wiring.reactor
    if not settings.enabled(ENABLE_ROOMS):
        return
    config = settings.services.rooms or RoomsConfig()
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    wiring.root.add_database(database)
    stored, uses = load_sync(database, config.rooms, reactor.seconds())
    store = RoomStore(database)
    authorizer = Authorizer(
        wiring.realms,
        reactor,
        store,
        allow_anonymous=config.allow_anonymous,
        anonymous_realm_id=config.anonymous_realm_id,
        uses=uses,
        token_max_ttl=config.token_max_ttl,
    )
    ice = None
    turn_on = settings.enabled(ENABLE_TURN)
    if turn_on or settings.enabled(ENABLE_STUN):
        bind, secret = settings.bind.ice, settings.turn.static_auth_secret
        root = wiring.root
        ice = IceServerSource(
            domain=bind.domain_name,
            port=bind.port,
            stun=True,
            turn_secret=secret.encode() if turn_on and secret is not None else None,
            tcp=bind.tcp,
            tls_port=bind.tls_port,
            port_of=(lambda: int(root.listener("ice-udp").bound_port))
            if bind.port == 0
            else None,
        )
    service = RoomService(config, reactor, authorizer, ice)
    for room in stored:
        metadata = None if room.metadata is None else loads(room.metadata)
        service.add_persistent(
            room.name, room.realm_id, room.max_peers, metadata, room.created_at
        )
    edge = RoomEdge(service, config, reactor)
    wiring.metrics.register(edge.metrics)
    json_ws = UpgradeOnly(
        RoomFactory(edge, JsonRoomConnection, config.max_frame_json, reactor)
    )
    binary_ws = UpgradeOnly(RoomFactory(edge, BinaryRoomConnection, MAX_FRAME, reactor))
    wiring.site.mount("rooms", RoomsRoot(json_ws, binary_ws, reactor))
    if config.json_ws_alias:
        wiring.site.mount("ws", json_ws)
    if config.binary_root_alias:
        wiring.site.root_upgrade = binary_ws
    bearer = config.api_token or settings.observability.metrics.token
    verifier = _nonce_verifier(wiring)
    wiring.site.mount(
        "api",
        ApiResource(
            service,
            verifier,
            None if bearer is None else bearer.value,
            open_in_dev=settings.env == "dev",
        ),
    )
    wiring.realms.on_change(service.check_realms)
    wiring.root.add_session_service(RoomSessions(edge))
    wiring.root.add_background(TimerService(1.0, service.check_realms))
    wiring.root.add_background(TimerService(1.0, edge.tick))
    wiring.root.add_background(TimerService(config.cleanup_interval, service.sweep))


def _build_directory(
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
        from actrix.core.redis_client import RedisClient
        from actrix.core.redis_directory import RedisDirectory, new_node_id

        client = RedisClient(settings.redis)
        wiring.root.add_connection(client)
        node_id = new_node_id()
        bus = RedisBus(client, node_id, reactor)
        wiring.root.add_connection(bus)
        log.info("signaling directory on Redis as node {node}", node=node_id)
        shared = RedisDirectory(
            client,
            reactor,
            node_id,
            heartbeat_timeout,
            settings.redis.key_prefix,
        )
        return shared, bus, None
    database = open_store(settings.storage, settings.sqlite_path, STORE, reactor)
    wiring.root.add_database(database)
    store = SignalingStore(database)
    local = LocalDirectory(reactor, store)
    rows, specs = load_sync(database, int(reactor.seconds()))
    local.load(rows, specs)
    return local, None, store


def _add_http_listener(wiring: Wiring) -> None:
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
    if settings.env != "dev" and settings.actrix_shared_key.value == EXAMPLE_SHARED_KEY:
        raise SystemExit(
            "actrix: actrix_shared_key is still the example value; set your own "
            "(openssl rand -hex 32)"
        )
    try:
        root = build_root_service(settings, reactor)
    except StartupError as e:
        raise SystemExit(f"actrix: {e}") from e
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
