"""Builder of the room service (JSON and binary room protocols)."""

from __future__ import annotations

from actrix.assembly import Wiring
from actrix.assembly.identity import nonce_verifier
from actrix.core.http import SiteLimits, SiteRoot, build_site
from actrix.core.listen import TCPListener
from actrix.core.settings import RoomsBind
from actrix.core.storage import open_store
from actrix.core.tls import ServerTLS


def build_rooms(wiring: Wiring) -> None:
    """Rooms (bit 32): ``/rooms/{ws,bin,health,demo}`` and ``/api/*``.

    On the main site, or with ``[bind.rooms]`` on a listener of their own
    (named ``rooms``), which under a supervisor only worker 0 has: the room
    membership then lives in that one worker.
    """
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
    if wiring.worker is not None and not wiring.worker.serves_rooms:
        return  # worker 0 serves them on [bind.rooms] (actrix.workers)
    site = wiring.site if settings.bind.rooms is None else SiteRoot()
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
    wiring.rooms = service
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
    site.mount("rooms", RoomsRoot(json_ws, binary_ws, reactor))
    if config.json_ws_alias:
        site.mount("ws", json_ws)
    if config.binary_root_alias:
        site.root_upgrade = binary_ws
    bearer = config.api_token or settings.observability.metrics.token
    verifier = nonce_verifier(wiring)
    site.mount(
        "api",
        ApiResource(
            service,
            verifier,
            None if bearer is None else bearer.value,
            open_in_dev=settings.env == "dev",
            clock=reactor,
        ),
    )
    wiring.realms.on_change(service.check_realms)
    wiring.root.add_session_service(RoomSessions(edge))
    wiring.root.add_background(TimerService(1.0, service.check_realms))
    wiring.root.add_background(TimerService(1.0, edge.tick))
    wiring.root.add_background(TimerService(config.cleanup_interval, service.sweep))
    if settings.bind.rooms is not None:
        wiring.root.add_listener(_rooms_listener(wiring, settings.bind.rooms, site))


def _rooms_listener(wiring: Wiring, bind: RoomsBind, site: SiteRoot) -> TCPListener:
    """``[bind.rooms]``: the room endpoints' own listener (TLS when it has a pair)."""
    tls = None
    if bind.cert is not None and bind.key is not None:
        tls = ServerTLS(bind.cert, bind.key)
        wiring.root.reload_hooks.append(tls.reload)
    limits = SiteLimits(
        request_timeout=bind.request_timeout, idle_timeout=bind.idle_timeout
    )
    listener = TCPListener(
        wiring.reactor,
        bind.ip,
        bind.port,
        build_site(site, wiring.reactor, limits, wiring.throttle),
        tls=tls,
        max_per_ip=bind.max_connections_per_ip,
    )
    listener.setName("rooms")
    return listener
