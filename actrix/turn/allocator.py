"""TURN allocations and permissions: the authenticated requests (RFC 5766, 6156).

:class:`Allocator` handles Allocate, Refresh, CreatePermission and
ChannelBind for a client whose credential has been checked: it creates and
deletes :class:`~actrix.turn.allocation.Allocation` entries in the data
path's table, opens their relay sockets (an injected opener over the port
pool, EVEN-PORT reservations included), keeps permissions, channels and
lifetimes, and expires them on :meth:`Allocator.sweep`. A refused request
raises :class:`~actrix.turn.responses.Reject`. Relay sockets and ports are
:class:`~actrix.turn.relayports.RelayPorts`' business. A new allocation gets
its bandwidth caps from :class:`~actrix.turn.bandwidth.Bandwidth`; a deleted
one is counted by reason and, with ``turn.allocation_log``, logged with its
traffic for accounting (principal, never the username: an actr username
carries the encrypted token).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.config import TurnConfig
from actrix.core.logthrottle import LogThrottle
from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.turn.allocation import (
    CHANNEL_LIFETIME,
    PERMISSION_LIFETIME,
    Allocation,
    ClientLink,
    RelayOpener,
    SecondRelay,
)
from actrix.turn.authn import Grant
from actrix.turn.bandwidth import Bandwidth, Meter
from actrix.turn.datapath import DataPath, RelayProtocol
from actrix.turn.metrics import TurnMetrics
from actrix.turn.peers import PeerPolicy
from actrix.turn.quotas import Quotas
from actrix.turn.relayports import NoRelayPort, RelayPorts
from actrix.turn.responses import Reject, Responses
from actrix.turn.shedding import LoadShedding
from actrix.turn.tcprelay import (
    PeerConnection,
    TcpConnect,
    TcpListen,
    TcpRelays,
    connection_attempt,
)

log = Logger()


class Allocator:
    """Allocations, permissions and channels of authenticated clients."""

    def __init__(
        self,
        config: TurnConfig,
        clock: IReactorTime,
        data: DataPath,
        quotas: Quotas,
        responses: Responses,
        metrics: TurnMetrics,
        peers: PeerPolicy,
        open_relay: RelayOpener,
        relay_bind_ip: str,
        bandwidth: Bandwidth,
        shedding: LoadShedding,
        tcp_openers: tuple[TcpListen, TcpConnect] | None = None,
        log_throttle: LogThrottle | None = None,
    ) -> None:
        self._config = config
        # Count each allocation's traffic (allocation_log, or the admin API's list).
        self.account = config.allocation_log
        self._log_throttle = log_throttle or LogThrottle(clock)
        self._bandwidth = bandwidth
        self._shedding = shedding
        self._clock = clock
        self._allocations = data.allocations
        self._quotas = quotas
        self._responses = responses
        self._metrics = metrics
        self._peers = peers
        self._relay_bind_ip = relay_bind_ip
        self._relays = RelayPorts(config.relay_port_range, open_relay, metrics)
        self._tcp: TcpRelays | None = None
        if tcp_openers is not None:
            self._tcp = TcpRelays(
                clock,
                self._relays.pool,
                tcp_openers[0],
                tcp_openers[1],
                metrics,
                _announce,
            )

    def handle(self, message: Message, link: ClientLink, grant: Grant) -> None:
        """One authenticated request. Raises Reject or codec.DecodeError.

        Answers are signed with the request's own key (``grant.key``): a
        client may move to another password algorithm with a new nonce.
        """
        method = message.method
        if method == codec.METHOD_ALLOCATE:
            self._allocate(message, link, grant)
            return
        if method == codec.METHOD_CONNECTION_BIND:
            self._connection_bind(message, link, grant)
            return
        allocation = self._allocations.get(link.allocation_key)
        if allocation is None:
            raise Reject(437)
        if allocation.username != grant.credential.username:
            raise Reject(441)
        if message.unknown:
            raise Reject(420, message.unknown)
        key = grant.key
        if method == codec.METHOD_REFRESH:
            self._refresh(message, link, allocation, key)
        elif method == codec.METHOD_CREATE_PERMISSION:
            self._create_permission(message, link, allocation, key)
        elif method == codec.METHOD_CONNECT:
            self._connect(message, link, allocation, key)
        else:
            if allocation.tcp is not None:
                raise Reject(400)  # RFC 6062 §4: no channels on TCP allocations
            self._channel_bind(message, link, allocation, key)

    def sweep(self, now: float) -> None:
        """Expire allocations, permissions, channels and reservations."""
        for allocation in list(self._allocations.values()):
            if allocation.expires_at <= now:
                self.delete(allocation, "expired")
            elif allocation.permissions or allocation.channel_expiry:
                allocation.expire(now)
        self._relays.sweep(now)

    @property
    def free_ports(self) -> int:
        """Relay ports not in use (UDP and TCP relays share the pool)."""
        return len(self._relays.pool)

    @property
    def tcp_connections(self) -> int:
        """RFC 6062 peer connections open or waiting for ConnectionBind."""
        return 0 if self._tcp is None else self._tcp.open_count

    def close_all(self) -> list[Deferred[Any]]:
        """Delete every allocation and reservation (shutdown)."""
        closing = [self.delete(a, "shutdown") for a in list(self._allocations.values())]
        closing.extend(self._relays.close_all())
        return [d for d in closing if d is not None]

    # -- Allocate ------------------------------------------------------------

    def _allocate(self, message: Message, link: ClientLink, grant: Grant) -> None:
        attrs = message.attrs
        cred = grant.credential
        existing = self._allocations.get(link.allocation_key)
        if existing is not None:
            if existing.transaction_id == message.transaction_id:
                self._allocate_success(message, link, existing, None, grant.key)
                return
            raise Reject(437)
        if message.unknown:
            raise Reject(420, message.unknown)
        transport = attrs.get(codec.REQUESTED_TRANSPORT)
        if transport is None:
            raise Reject(400)
        protocol = codec.decode_requested_transport(transport)
        tcp = protocol == codec.TRANSPORT_TCP and self._tcp is not None
        if protocol != codec.TRANSPORT_UDP and not tcp:
            raise Reject(442)
        if (
            tcp
            and (
                link.transport_name == "udp"  # RFC 6062 §5.1
                or codec.EVEN_PORT in attrs
                or codec.RESERVATION_TOKEN in attrs
                or codec.ADDITIONAL_ADDRESS_FAMILY in attrs
                or attrs.get(codec.REQUESTED_ADDRESS_FAMILY, b"\x01")[:1] != b"\x01"
            )
        ):
            raise Reject(400)
        if codec.DONT_FRAGMENT in attrs:
            raise Reject(420, [codec.DONT_FRAGMENT])
        family = self._requested_family(message)
        token = attrs.get(codec.RESERVATION_TOKEN)
        dual = self._wants_dual(message, token)
        even = attrs.get(codec.EVEN_PORT)
        if token is not None and (
            even is not None or codec.REQUESTED_ADDRESS_FAMILY in attrs
        ):
            raise Reject(400)
        reserve = codec.decode_even_port(even) if even is not None else False
        shed = self._shedding.check(link.address[0], len(self._allocations))
        if shed is not None:
            code, alternate = shed
            if alternate is None:
                raise Reject(code)
            raise Reject(code, extra=[(codec.ALTERNATE_SERVER, alternate)])
        if not self._quotas.allocation_allowed(
            message, link, cred.principal, grant.key
        ):
            return
        lifetime = self._lifetime(message)
        now = self._clock.seconds()
        allocation = Allocation(
            link,
            cred.username,
            cred.principal,
            ("", 0),
            family,
            now + lifetime,
            message.transaction_id,
        )
        if tcp:
            new_token = None
            self._bind_tcp_relay(allocation)
        else:
            new_token = self._bind_relay(
                allocation, token, even is not None, reserve, now
            )
        if dual:
            self._bind_second_relay(allocation)
        allocation.created_at = now
        realm = (
            f"actr:{cred.realm_id}"
            if cred.realm_id is not None
            else f"stun:{self._config.realm}"
        )
        allocation.meter = self._bandwidth.acquire(cred.principal, realm, self.account)
        self._allocations[link.allocation_key] = allocation
        self._quotas.allocated(cred.principal)
        self._metrics.allocations_total += 1
        self._count_family(allocation)
        if self._responses.debug:
            log.debug(
                "allocation {relay} for {client} ({principal})",
                relay=allocation.relay_address,
                client=link.address,
                principal=cred.principal,
            )
        self._allocate_success(message, link, allocation, new_token, grant.key)

    def _allocate_success(
        self,
        message: Message,
        link: ClientLink,
        allocation: Allocation,
        token: bytes | None,
        key: bytes,
    ) -> None:
        remaining = max(0, int(allocation.expires_at - self._clock.seconds()))
        addresses = [allocation.relay_address]
        if allocation.relay6 is not None:
            addresses.append(allocation.relay6.address)
        self._responses.allocate_success(
            message, link, addresses, remaining, key, token, allocation.address_error
        )

    def _count_family(self, allocation: Allocation) -> None:
        metrics = self._metrics
        if allocation.relay6 is not None:
            metrics.allocation_families["dual"] += 1
        elif allocation.family == codec.FAMILY_IPV6:
            metrics.allocation_families["ipv6"] += 1
        else:
            metrics.allocation_families["ipv4"] += 1
        if allocation.address_error:
            metrics.address_errors[allocation.address_error] += 1

    def _bind_tcp_relay(self, allocation: Allocation) -> None:
        assert self._tcp is not None  # noqa: S101 (checked by the caller)
        tcp = self._tcp.open(self._relay_bind_ip, allocation)
        if tcp is None:
            raise Reject(508)
        allocation.tcp = tcp
        allocation.relay_address = (self._config.advertised_ip, tcp.port)

    def _connect(
        self, message: Message, link: ClientLink, alloc: Allocation, key: bytes
    ) -> None:
        """RFC 6062 §5.2: open a TCP connection from the relay to a peer."""
        if alloc.tcp is None or self._tcp is None:
            raise Reject(400)
        peer = self._peer_addresses(message, alloc)[0]
        self._check_peer(alloc, peer[0])
        alloc.permissions[peer[0]] = self._clock.seconds() + PERMISSION_LIFETIME

        def answer(connection: PeerConnection) -> None:
            if connection.closed:
                self._responses.error(message, link, 447, key)
                return
            value = codec.encode_u32(connection.connection_id)
            self._responses.success(message, link, [(codec.CONNECTION_ID, value)], key)

        if not self._tcp.connect(alloc, peer, self._relay_bind_ip, answer):
            raise Reject(446)

    def _connection_bind(
        self, message: Message, link: ClientLink, grant: Grant
    ) -> None:
        """RFC 6062 §5.4: make this new connection the data pipe of a peer's."""
        if self._tcp is None or link.transport_name == "udp":
            raise Reject(400)
        if link.allocation_key in self._allocations:
            raise Reject(400)  # a control connection cannot become a data one
        value = message.attrs.get(codec.CONNECTION_ID)
        if value is None:
            raise Reject(400)
        connection = self._tcp.take_unbound(codec.decode_u32(value))
        if connection is None:
            self._metrics.tcp_connections["bind_unknown"] += 1
            suppressed = self._log_throttle.admit(link.address[0], "bind_unknown")
            if suppressed is not None:
                log.warn(
                    "ConnectionBind from {client} for an unknown or expired"
                    " connection id ({suppressed} similar lines suppressed)",
                    client=link.address[0],
                    suppressed=suppressed,
                )
            raise Reject(400)
        allocation = connection.allocation
        if allocation is None or allocation.username != grant.credential.username:
            connection.close()
            raise Reject(441)
        self._responses.success(message, link, [], grant.key)
        data_link: Any = link  # a TurnStreamProtocol (transport_name tcp/tls)
        connection.bind(data_link)
        self._metrics.tcp_connections["bound"] += 1

    def _wants_dual(self, message: Message, token: bytes | None) -> bool:
        """ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2): IPv6 only, alone, no token."""
        value = message.attrs.get(codec.ADDITIONAL_ADDRESS_FAMILY)
        if value is None:
            return False
        if codec.REQUESTED_ADDRESS_FAMILY in message.attrs or token is not None:
            raise Reject(400)
        if codec.decode_address_family(value) != codec.FAMILY_IPV6:
            raise Reject(400)
        return True

    def _bind_second_relay(self, allocation: Allocation) -> None:
        """The IPv6 half of a dual allocation; failing it is ADDRESS-ERROR-CODE."""
        ipv6 = self._config.relay_ipv6_ip
        if not ipv6:
            allocation.address_error = 440
            return
        protocol = RelayProtocol(allocation, self._metrics)
        try:
            port, listening = self._relays.open(ipv6, protocol, False)
        except NoRelayPort:
            allocation.address_error = 508
            return
        allocation.relay6 = SecondRelay(protocol, listening, (ipv6, port))

    def _requested_family(self, message: Message) -> int:
        value = message.attrs.get(codec.REQUESTED_ADDRESS_FAMILY)
        if value is None:
            return codec.FAMILY_IPV4
        family = codec.decode_address_family(value)
        if family == codec.FAMILY_IPV4:
            return family
        if family == codec.FAMILY_IPV6 and self._config.relay_ipv6_ip:
            return family
        raise Reject(440)

    def _lifetime(self, message: Message) -> float:
        value = message.attrs.get(codec.LIFETIME)
        default = self._config.default_lifetime
        requested = default if value is None else codec.decode_u32(value)
        return float(min(max(requested, default), self._config.max_lifetime))

    def _bind_relay(
        self,
        allocation: Allocation,
        token: bytes | None,
        even: bool,
        reserve: bool,
        now: float,
    ) -> bytes | None:
        """Open (or claim a reserved) relay socket; returns a new RESERVATION-TOKEN."""
        if allocation.family == codec.FAMILY_IPV6:
            bind_ip = advertised = self._config.relay_ipv6_ip or "::"
        else:
            bind_ip, advertised = self._relay_bind_ip, self._config.advertised_ip
        if token is not None:
            reservation = self._relays.claim(token)
            if reservation is None:
                raise Reject(508)
            # RFC 6156 §4.2: the reserved port fixes the family (the request
            # may not carry REQUESTED-ADDRESS-FAMILY next to the token).
            allocation.family = reservation.family
            if reservation.family == codec.FAMILY_IPV6:
                advertised = self._config.relay_ipv6_ip or "::"
            reservation.protocol.allocation = allocation
            allocation.relay = reservation.protocol
            allocation.relay_port = reservation.relay_port
            allocation.relay_address = (advertised, reservation.port)
            return None
        protocol = RelayProtocol(allocation, self._metrics)
        try:
            port, listening = self._relays.open(bind_ip, protocol, even)
        except NoRelayPort:
            raise Reject(508) from None
        allocation.relay = protocol
        allocation.relay_port = listening
        allocation.relay_address = (advertised, port)
        if not reserve:
            return None
        return self._relays.reserve(bind_ip, port + 1, now, allocation.family)

    # -- Refresh, CreatePermission, ChannelBind --------------------------------

    def _refresh(
        self, message: Message, link: ClientLink, alloc: Allocation, key: bytes
    ) -> None:
        family = message.attrs.get(codec.REQUESTED_ADDRESS_FAMILY)
        if family is not None and not alloc.holds_family(
            codec.decode_address_family(family)
        ):
            raise Reject(443)
        value = message.attrs.get(codec.LIFETIME)
        if value is not None and codec.decode_u32(value) == 0:
            self.delete(alloc, "refresh 0")
            lifetime = 0.0
        else:
            lifetime = self._lifetime(message)
            alloc.expires_at = self._clock.seconds() + lifetime
        attrs = [(codec.LIFETIME, codec.encode_u32(int(lifetime)))]
        self._responses.success(message, link, attrs, key)

    def _peer_addresses(self, message: Message, alloc: Allocation) -> list[Any]:
        first = message.attrs.get(codec.XOR_PEER_ADDRESS)
        if first is None:
            raise Reject(400)
        txid = message.transaction_id
        peers = []
        for value in (first, *message.extra_peers):
            ip, port = codec.decode_xor_address(value, txid)
            family = codec.FAMILY_IPV6 if ":" in ip else codec.FAMILY_IPV4
            if not alloc.holds_family(family):
                raise Reject(443)
            peers.append((ip, port))
        return peers

    def _check_peer(self, alloc: Allocation, ip: str) -> None:
        rule = self._peers.denied_rule(ip)
        if rule is not None:
            self._metrics.denied_peers[rule] += 1
            log.warn(
                "peer {peer} refused for {principal}: {rule}",
                peer=ip,
                principal=alloc.principal,
                rule=rule,
            )
            raise Reject(403)

    def _create_permission(
        self, message: Message, link: ClientLink, alloc: Allocation, key: bytes
    ) -> None:
        peers = self._peer_addresses(message, alloc)
        for ip, _ in peers:
            self._check_peer(alloc, ip)
        until = self._clock.seconds() + PERMISSION_LIFETIME
        for ip, _ in peers:
            alloc.permissions[ip] = until
        self._responses.success(message, link, [], key)

    def _channel_bind(
        self, message: Message, link: ClientLink, alloc: Allocation, key: bytes
    ) -> None:
        value = message.attrs.get(codec.CHANNEL_NUMBER)
        if value is None:
            raise Reject(400)
        number = codec.decode_channel_number(value)
        if not codec.CHANNEL_MIN <= number <= codec.CHANNEL_MAX:
            raise Reject(400)
        peer = self._peer_addresses(message, alloc)[0]
        # RFC 5766 §11.2: a channel stays on its peer and a peer on its channel.
        bound = alloc.channels.get(number)
        if bound is not None and bound != peer:
            raise Reject(400)
        other = alloc.peer_channels.get(peer)
        if other is not None and other != number:
            raise Reject(400)
        self._check_peer(alloc, peer[0])
        now = self._clock.seconds()
        alloc.channels[number] = peer
        alloc.peer_channels[peer] = number
        alloc.channel_expiry[number] = now + CHANNEL_LIFETIME
        alloc.permissions[peer[0]] = now + PERMISSION_LIFETIME
        self._responses.success(message, link, [], key)

    # -- teardown --------------------------------------------------------------

    def delete(self, alloc: Allocation, why: str) -> Deferred[Any] | None:
        """Remove an allocation, close its relay socket, release its port."""
        key = alloc.link.allocation_key
        if self._allocations.get(key) is not alloc:
            return None
        del self._allocations[key]
        self._quotas.released(alloc.principal)
        meter, alloc.meter = alloc.meter, None
        self._bandwidth.release(meter)
        self._metrics.allocations_closed[why.replace(" ", "_")] += 1
        if self._config.allocation_log and meter is not None:
            self._log_traffic(alloc, why, meter)
        alloc.link.allocation_deleted()
        relay, listening = alloc.relay, alloc.relay_port
        alloc.relay = alloc.relay_port = None
        if relay is not None:
            relay.allocation = None
        closing = []
        if listening is not None:
            closing.append(self._relays.close(listening, alloc.relay_address[1]))
        if alloc.tcp is not None and self._tcp is not None:
            closing.append(self._tcp.close(alloc))
        second, alloc.relay6 = alloc.relay6, None
        if second is not None:
            second.protocol.allocation = None
            closing.append(self._relays.close(second.listening, second.address[1]))
        waits = [d for d in closing if d is not None]
        if not waits:
            return None
        if len(waits) == 1:
            return waits[0]
        return DeferredList(waits, consumeErrors=True)

    def _log_traffic(self, alloc: Allocation, why: str, meter: Meter) -> None:
        link = alloc.link
        log.info(
            "TURN allocation closed ({why}): {principal} from {client} over"
            " {transport}, relay {relay}, {duration} s; to peers {packets_out}"
            " packets / {bytes_out} bytes, to client {packets_in} packets /"
            " {bytes_in} bytes",
            why=why,
            principal=alloc.principal,
            client=f"{link.address[0]}:{link.address[1]}",
            transport=link.transport_name,
            relay=_relays_text(alloc),
            duration=round(self._clock.seconds() - alloc.created_at, 1),
            packets_out=meter.packets_out,
            bytes_out=meter.bytes_out,
            packets_in=meter.packets_in,
            bytes_in=meter.bytes_in,
        )


def _relays_text(alloc: Allocation) -> str:
    text = f"{alloc.relay_address[0]}:{alloc.relay_address[1]}"
    second = alloc.relay6
    if second is not None:
        text += f" + [{second.address[0]}]:{second.address[1]}"
    return text


def _announce(connection: PeerConnection) -> None:
    """ConnectionAttempt on the control connection for an accepted peer."""
    allocation = connection.allocation
    if allocation is not None:
        allocation.link.send(connection_attempt(connection))
