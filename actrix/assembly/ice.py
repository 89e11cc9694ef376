"""Builder of the STUN/TURN service and its UDP, TCP and TLS listeners."""

from __future__ import annotations

from typing import Any

from actrix.assembly import Wiring
from actrix.core.listen import TCPListener
from actrix.core.proxyproto import ProxyPolicy
from actrix.core.settings import turn_drain_flag
from actrix.core.tls import ServerTLS


def build_ice(wiring: Wiring) -> None:
    """STUN (bit 2) / TURN (bit 4) on ``bind.ice``: UDP, TCP and optional TLS."""
    from actrix.core.config import ENABLE_STUN, ENABLE_TURN
    from actrix.core.listen import UDPListener

    settings = wiring.settings
    turn_on = settings.enabled(ENABLE_TURN)
    if not (turn_on or settings.enabled(ENABLE_STUN)):
        return
    if wiring.worker is not None and not wiring.worker.serves_ice:
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
            account_traffic=settings.admin.enabled,
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
        wiring.turn = service
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
