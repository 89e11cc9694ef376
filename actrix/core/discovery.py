"""LAN discovery: the daemon's endpoints as DNS-SD services over mDNS (python-zeroconf).

With ``[discovery] mdns = true`` the daemon announces, under one instance name:

* ``_actrix._tcp``: the daemon itself (its HTTP(S) site, else its ICE port),
  TXT ``id`` (random per start), ``node`` (``name``), ``services``;
* ``_actr-signaling._tcp``: the signaling WebSocket (TXT ``path``, ``tls``);
* ``_actrix-rooms._tcp``: the rooms WebSockets (TXT ``path``, ``bin``, ``tls``);
* ``_stun._udp``, ``_turn._udp``, ``_turn._tcp``, ``_turns._tcp``: ICE ports.

Every record carries the same ``id`` so ``actrix discover`` groups them by
daemon. python-zeroconf's calls block (probing takes ~1.7 s), so
:class:`MdnsAdvertiser` makes them on the reactor's thread pool; it withdraws
every record (goodbye packets) when it stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from actrix.core.settings import DiscoveryConfig
from actrix.core.toml_table import Table

if TYPE_CHECKING:
    from zeroconf import Zeroconf

    from actrix.core.settings import Settings

log = Logger()

DAEMON: Final = "_actrix._tcp.local."
SIGNALING: Final = "_actr-signaling._tcp.local."
ROOMS: Final = "_actrix-rooms._tcp.local."
STUN: Final = "_stun._udp.local."
TURN_UDP: Final = "_turn._udp.local."
TURN_TCP: Final = "_turn._tcp.local."
TURNS: Final = "_turns._tcp.local."
SERVICE_TYPES: Final = (DAEMON, SIGNALING, ROOMS, STUN, TURN_UDP, TURN_TCP, TURNS)
MAX_INSTANCE: Final = 63  # bytes: one DNS label
REGISTER_TIMEOUT: Final = 10.0


def read_discovery(t: Table) -> DiscoveryConfig:
    """``[discovery]``: ``mdns``, ``instance``, ``interfaces``."""
    instance = t.opt_string("instance")
    if instance is not None and not 0 < len(instance.encode()) <= MAX_INSTANCE:
        t.error("instance", f"must be 1 to {MAX_INSTANCE} bytes")
    interfaces = t.string_list("interfaces")
    for address in interfaces:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            t.error("interfaces", f"{address!r} is not an IP address")
    return DiscoveryConfig(t.boolean("mdns"), instance, interfaces)


@attrs.frozen
class Advertisement:
    """One DNS-SD service instance to announce."""

    service_type: str
    port: int
    addresses: tuple[str, ...]
    properties: tuple[tuple[str, str], ...] = ()


def host_addresses(
    bind_ip: str, advertised_ip: str, interfaces: Sequence[str]
) -> tuple[str, ...]:
    """Where clients reach a listener: its own IP when specific, else the
    advertised IP, else the configured interfaces, else every interface's."""
    for candidate in (bind_ip, advertised_ip):
        if _specific(candidate):
            return (candidate,)
    if interfaces:
        return tuple(interfaces)
    return _local_addresses()


def _specific(ip: str) -> bool:
    try:
        return not ipaddress.ip_address(ip).is_unspecified
    except ValueError:
        return False


def _local_addresses() -> tuple[str, ...]:
    import ifaddr

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for entry in adapter.ips:
            if isinstance(entry.ip, str) and not entry.ip.startswith("127."):
                found.append(entry.ip)
    return tuple(found)


def service_info(
    advertisement: Advertisement, instance: str, node: str, node_id: str, host: str
) -> Any:
    """A zeroconf ``ServiceInfo`` for one advertisement."""
    from zeroconf import ServiceInfo

    properties = {"id": node_id, "node": node, **dict(advertisement.properties)}
    return ServiceInfo(
        advertisement.service_type,
        f"{instance}.{advertisement.service_type}",
        port=advertisement.port,
        properties=properties,
        server=f"{host}.local.",
        parsed_addresses=list(advertisement.addresses),
    )


def zeroconf_for(interfaces: Sequence[str]) -> Zeroconf:
    """A Zeroconf on these addresses (all interfaces when empty). Blocking."""
    from zeroconf import IPVersion, Zeroconf

    if not interfaces:
        return Zeroconf(ip_version=IPVersion.All)
    versions = {ipaddress.ip_address(a).version for a in interfaces}
    version = (
        IPVersion.All
        if len(versions) > 1
        else (IPVersion.V4Only if versions == {4} else IPVersion.V6Only)
    )
    return Zeroconf(interfaces=list(interfaces), ip_version=version)


def new_node_id() -> str:
    return secrets.token_hex(6)


class MdnsAdvertiser(Service):
    """Announces the advertisements while running; withdraws them on stop."""

    name = "mdns"

    def __init__(
        self,
        config: DiscoveryConfig,
        node: str,
        plan: Callable[[], list[Advertisement]],
        zeroconf_factory: Callable[[], Zeroconf] | None = None,
    ) -> None:
        self._instance = config.instance or node
        self._node = node
        self._interfaces = config.interfaces
        self._plan = plan
        self._factory = zeroconf_factory or self._zeroconf
        self.node_id = new_node_id()
        self._zc: Zeroconf | None = None
        self._registering: Deferred[None] = succeed(None)

    def startService(self) -> None:
        super().startService()
        host = socket.gethostname().split(".")[0] or "actrix"
        infos = [
            service_info(a, self._instance, self._node, self.node_id, host)
            for a in self._plan()
        ]
        d = deferToThread(self._register, infos)
        d.addCallback(self._registered, len(infos))
        d.addErrback(lambda f: log.failure("announcing on mDNS", f))
        self._registering = d

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self._registering
        d.addCallback(lambda _: deferToThread(self._withdraw))
        d.addErrback(lambda f: log.failure("withdrawing the mDNS announcements", f))
        return d

    def _zeroconf(self) -> Zeroconf:
        return zeroconf_for(self._interfaces)

    # On a pool thread: zeroconf's own event loop runs in a thread it owns.

    def _register(self, infos: list[Any]) -> None:
        zc = self._factory()
        self._zc = zc

        async def register_all() -> None:
            tasks = [
                await zc.async_register_service(info, allow_name_change=True)
                for info in infos
            ]
            await asyncio.gather(*tasks)

        loop = zc.loop
        if loop is None:  # zeroconf always starts its loop; never None here
            raise RuntimeError("zeroconf has no event loop")
        future = asyncio.run_coroutine_threadsafe(register_all(), loop)
        future.result(REGISTER_TIMEOUT)

    def _registered(self, _: None, count: int) -> None:
        log.info(
            "mDNS: {count} services announced as {instance}",
            count=count,
            instance=self._instance,
        )

    def _withdraw(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            zc.unregister_all_services()
        finally:
            zc.close()
        log.info("mDNS: announcements withdrawn")


def plan_advertisements(
    settings: Settings, port_of: Callable[[str], int | None]
) -> list[Advertisement]:
    """What a daemon with these settings announces; ``port_of(listener name)``
    gives a bound port (None: no such listener).

    The ``_actrix._tcp`` record (first) also sums up every endpoint in its TXT
    (``signaling``/``rooms`` = ``port/path``, ``stun``/``turn``/``turn_tcp``/
    ``turns`` = port, ``ice_ip`` when ICE listens elsewhere), so ``actrix
    discover`` needs one record per daemon: a responder answers the records
    that share its host name at most once a second each (RFC 6762 §6).
    """
    from actrix.core.config import ENABLE_ROOMS, ENABLE_SIGNALING, ENABLE_TURN

    interfaces = settings.discovery.interfaces
    summary: list[tuple[str, str]] = [("services", ",".join(settings.enabled_services))]
    ads: list[Advertisement] = []
    web: tuple[str, ...] = ()
    site = settings.site_bind
    http_port = port_of("http") if site is not None else None
    if site is not None and http_port is not None:
        tls = ("tls", "1" if settings.uses_https else "0")
        summary.append(tls)
        web = host_addresses(site.ip, site.advertised_ip, interfaces)
        if settings.enabled(ENABLE_SIGNALING):
            summary.append(("signaling", f"{http_port}/signaling/ws"))
            path = ("path", "/signaling/ws")
            ads.append(Advertisement(SIGNALING, http_port, web, (path, tls)))
        if settings.enabled(ENABLE_ROOMS) and settings.bind.rooms is None:
            summary.append(("rooms", f"{http_port}/rooms/ws"))
            paths = (("path", "/rooms/ws"), ("bin", "/rooms/bin"))
            ads.append(Advertisement(ROOMS, http_port, web, (*paths, tls)))
    rooms = settings.bind.rooms
    rooms_port = port_of("rooms") if rooms is not None else None
    if rooms is not None and rooms_port is not None:
        # Rooms on their own listener ([bind.rooms]).
        rooms_tls = ("tls", "1" if rooms.cert is not None else "0")
        summary.append(("rooms", f"{rooms_port}/rooms/ws"))
        paths = (("path", "/rooms/ws"), ("bin", "/rooms/bin"))
        rooms_web = host_addresses(rooms.ip, "", interfaces)
        ads.append(Advertisement(ROOMS, rooms_port, rooms_web, (*paths, rooms_tls)))
    ice_port = port_of("ice-udp")
    ice: tuple[str, ...] = ()
    if ice_port is not None:
        bind = settings.bind.ice
        ice = host_addresses(bind.ip, settings.turn.advertised_ip, interfaces)
        summary.append(("stun", str(ice_port)))
        ads.append(Advertisement(STUN, ice_port, ice))
        if settings.enabled(ENABLE_TURN):
            summary.append(("turn", str(ice_port)))
            ads.append(Advertisement(TURN_UDP, ice_port, ice))
            for listener, service_type, key in (
                ("ice-tcp", TURN_TCP, "turn_tcp"),
                ("ice-tls", TURNS, "turns"),
            ):
                port = port_of(listener)
                if port is not None:
                    summary.append((key, str(port)))
                    ads.append(Advertisement(service_type, port, ice))
    if http_port is not None:
        if ice and ice != web:
            summary.append(("ice_ip", ",".join(ice)))
        daemon = Advertisement(DAEMON, http_port, web, tuple(summary))
    elif ice_port is not None:
        daemon = Advertisement(DAEMON, ice_port, ice, tuple(summary))
    else:
        return []
    return [daemon, *ads]


def advertiser(settings: Settings, listener: Callable[[str], Any]) -> MdnsAdvertiser:
    """The daemon's advertiser; ``listener(name)`` is a bound listener (``.bound_port``)
    or raises KeyError."""

    def port_of(name: str) -> int | None:
        try:
            return int(listener(name).bound_port)
        except KeyError:
            return None

    return MdnsAdvertiser(
        settings.discovery,
        settings.name,
        lambda: plan_advertisements(settings, port_of),
    )
