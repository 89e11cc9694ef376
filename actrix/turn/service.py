"""The TURN server's state and rules (RFC 5766, RFC 6156), independent of transports.

UDP, TCP and TLS protocols decode messages and hand them here with a
:class:`~actrix.turn.allocation.ClientLink` to answer on. This module owns the
allocations (keyed by the client's 5-tuple: its UDP address, or its TCP/TLS
connection), their permissions, channels, lifetimes (an injected clock and one
sweep timer) and relay sockets (an injected opener over a port pool), the
quotas, the rate limit and the long-term-credential checks. Everything runs
synchronously except the first validation of an actr username, whose request
is answered when :meth:`TurnAuth.resolve` completes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel, PredicateResult

from actrix.core.config import TurnConfig
from actrix.core.logging import LEVELS
from actrix.core.logthrottle import LogThrottle
from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.turn.allocation import (
    CHANNEL_LIFETIME,
    PERMISSION_LIFETIME,
    Allocation,
    ClientLink,
    PortPool,
    RelayOpener,
    RelayProtocol,
)
from actrix.turn.auth import AuthFailure, Credential, TurnAuth
from actrix.turn.limits import NonceIssuer, RateLimiter
from actrix.turn.metrics import TurnMetrics
from actrix.turn.peers import PeerPolicy

log = Logger()

SWEEP_INTERVAL: Final = 1.0
BIND_ATTEMPTS: Final = 32
RESERVATION_LIFETIME: Final = 30.0  # RFC 5766 §6.2
MAX_PENDING_USERNAMES: Final = 1024
MAX_WAITERS: Final = 16
_DEBUG_PROBE: Final = {"log_level": LogLevel.debug, "log_namespace": __name__}

_TURN_METHODS: Final = frozenset(
    {
        codec.METHOD_ALLOCATE,
        codec.METHOD_REFRESH,
        codec.METHOD_CREATE_PERMISSION,
        codec.METHOD_CHANNEL_BIND,
    }
)


class _Reject(Exception):
    """Answer the request with ``code`` (and UNKNOWN-ATTRIBUTES when given)."""

    def __init__(self, code: int, unknown: Iterable[int] = ()) -> None:
        super().__init__(code)
        self.code = code
        self.unknown = list(unknown)


class _Reservation:
    __slots__ = ("expires_at", "family", "port", "protocol", "relay_port")

    def __init__(
        self,
        port: int,
        relay_port: Any,
        protocol: RelayProtocol,
        expires_at: float,
        family: int,
    ) -> None:
        self.port = port
        self.relay_port = relay_port
        self.protocol = protocol
        self.expires_at = expires_at
        self.family = family


class TurnService(Service):
    """Allocations, permissions, channels and relaying for every ICE transport."""

    name = "turn"

    def __init__(
        self,
        config: TurnConfig,
        clock: IReactorTime,
        auth: TurnAuth,
        metrics: TurnMetrics,
        open_relay: RelayOpener,
        *,
        relay_bind_ip: str = "0.0.0.0",  # noqa: S104 (relays face the Internet)
        software: str = "",
        peers: PeerPolicy | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self._config = config
        self._clock = clock
        self._auth = auth
        self.metrics = metrics
        self._open_relay = open_relay
        self._relay_bind_ip = relay_bind_ip
        self._software = [(codec.SOFTWARE, software.encode())] if software else []
        self._peers = peers or PeerPolicy(config.peer_allow)
        self._ports = PortPool(*config.relay_port_range)
        self._nonces = NonceIssuer(clock, config.nonce_lifetime)
        self._rate = RateLimiter(
            clock, config.allocation_rate_per_ip, config.allocation_burst_per_ip
        )
        # New actr usernames cost a token decryption each, whatever the method:
        # without this bucket, Refresh/CreatePermission/ChannelBind with fresh
        # usernames would bypass the Allocate rate limit and keep the
        # decryption pool busy.
        self._validation_rate = RateLimiter(
            clock, config.allocation_rate_per_ip, config.allocation_burst_per_ip
        )
        # Refused requests and rejected credentials log a warn line each; a
        # client with a valid nonce could otherwise drive the log volume.
        self._log_throttle = LogThrottle(clock)
        self._realm_attr = config.realm.encode()
        self.allocations: dict[Any, Allocation] = {}
        self._per_principal: Counter[str] = Counter()
        self._reservations: dict[bytes, _Reservation] = {}
        self._pending: dict[str, list[tuple[Message, ClientLink]]] = {}
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self._sweep_interval = sweep_interval
        # A filtered-out log event still costs ~4 us; three per allocation
        # cycle add up, so debug lines are skipped unless the level allows
        # them (re-read every sweep, so a SIGHUP level change applies).
        self._debug = debug_enabled()
        metrics.active_allocations = lambda: len(self.allocations)

    @property
    def auth(self) -> TurnAuth:
        """The credential source (its key cache is inspected by tests)."""
        return self._auth

    # -- lifecycle -------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._sweeper.start(self._sweep_interval, now=False)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()
        closing = [self._delete(a, "shutdown") for a in list(self.allocations.values())]
        for token in list(self._reservations):
            closing.append(self._drop_reservation(token))
        self._pending.clear()
        return DeferredList([d for d in closing if d is not None], consumeErrors=True)

    def sweep(self) -> None:
        """Expire allocations, permissions, channels and reservations."""
        self._debug = debug_enabled()
        now = self._clock.seconds()
        for allocation in list(self.allocations.values()):
            if allocation.expires_at <= now:
                self._delete(allocation, "expired")
            elif allocation.permissions or allocation.channel_expiry:
                allocation.expire(now)
        for token, reservation in list(self._reservations.items()):
            if reservation.expires_at <= now:
                self._drop_reservation(token)

    # -- entry points from the protocols ---------------------------------

    def handle_message(self, message: Message, link: ClientLink) -> None:
        """Handle one decoded non-Binding STUN message from a client."""
        msg_type = message.msg_type
        if msg_type == codec.SEND_INDICATION:
            self._send_indication(message, link)
            return
        if message.msg_class != codec.CLASS_REQUEST:
            return  # responses and other indications are not for us
        if message.method not in _TURN_METHODS:
            self._error(message, link, 400)
            return
        credential = self._authenticate(message, link)
        if credential is None:
            return
        try:
            self._dispatch(message, link, credential)
        except _Reject as reject:
            self._error(message, link, reject.code, credential.key, reject.unknown)
        except codec.DecodeError:
            self.metrics.malformed += 1
            self._error(message, link, 400, credential.key)

    def channel_data(self, allocation: Allocation, data: bytes) -> None:
        """Relay one ChannelData message from the client (UDP padding tolerated)."""
        size = len(data)
        if size < 4:
            self.metrics.malformed += 1
            return
        channel = (data[0] << 8) | data[1]
        peer = allocation.channels.get(channel)
        if peer is None or peer[0] not in allocation.permissions:
            self.metrics.dropped_no_permission += 1
            return
        length = (data[2] << 8) | data[3]
        if length + 4 > size:
            self.metrics.malformed += 1
            return
        allocation.send_to_peer(data[4 : 4 + length], peer)
        metrics = self.metrics
        metrics.relayed_packets_out += 1
        metrics.relayed_bytes_out += length

    def connection_lost(self, link: ClientLink) -> None:
        """A TCP/TLS client went away: its allocation and waiting requests go too.

        A request still waiting for its username's validation must not be
        handled once the connection is gone: an Allocate would create an
        allocation (and hold a relay port) for a link nobody can use.
        """
        allocation = self.allocations.get(link.allocation_key)
        if allocation is not None:
            self._delete(allocation, "connection closed")
        if self._pending:
            for waiters in self._pending.values():
                waiters[:] = [w for w in waiters if w[1] is not link]

    # -- authentication --------------------------------------------------

    def _authenticate(self, message: Message, link: ClientLink) -> Credential | None:
        """RFC 5389 §10.2.2; answers the request itself and returns None on failure."""
        attrs = message.attrs
        ip = link.address[0]
        if message.integrity_offset < 0:
            self._challenge(message, link, 401)
            return None
        username_raw = attrs.get(codec.USERNAME)
        realm_raw = attrs.get(codec.REALM)
        nonce = attrs.get(codec.NONCE)
        if username_raw is None or realm_raw is None or nonce is None:
            self._error(message, link, 400)
            return None
        if not self._nonces.valid(nonce, ip):
            self._challenge(message, link, 438)
            return None
        if (
            message.method == codec.METHOD_ALLOCATE
            and link.allocation_key not in self.allocations
            and not self._rate.allow(ip)
        ):
            self._deny_quota(message, link, "rate limit", ip)
            return None
        try:
            username = codec.decode_text(username_raw, 513)
            realm = codec.decode_text(realm_raw, 763)
        except codec.DecodeError:
            self._auth_failed(message, link, AuthFailure("bad_username"))
            return None
        try:
            credential = self._auth.lookup(username, realm)
        except AuthFailure as failure:
            self._auth_failed(message, link, failure)
            return None
        if credential is None:
            self._resolve_later(username, realm, message, link)
            return None
        if not codec.check_integrity(message, credential.key):
            self._auth_failed(message, link, AuthFailure("bad_integrity"))
            return None
        if self._clock.seconds() > credential.expires_at:
            self._auth_failed(message, link, AuthFailure("expired"))
            return None
        return credential

    def _resolve_later(
        self, username: str, realm: str, message: Message, link: ClientLink
    ) -> None:
        waiters = self._pending.get(username)
        if waiters is not None:
            if len(waiters) < MAX_WAITERS:
                waiters.append((message, link))
            return
        if len(self._pending) >= MAX_PENDING_USERNAMES:
            self._error(message, link, 500)
            return
        ip = link.address[0]
        if not self._validation_rate.allow(ip):
            self._deny_quota(message, link, "validation rate limit", ip)
            return
        self._pending[username] = [(message, link)]
        d = Deferred.fromCoroutine(self._auth.resolve(username, realm))
        d.addCallback(self._resolved, username)
        d.addErrback(self._not_resolved, username)

    def _resolved(self, _: Credential, username: str) -> None:
        for message, link in self._pending.pop(username, []):
            if self.running:
                self.handle_message(message, link)

    def _not_resolved(self, failure: Any, username: str) -> None:
        waiters = self._pending.pop(username, [])
        if failure.check(AuthFailure):
            reason = failure.value
        else:
            log.failure("while validating a TURN credential", failure)
            reason = AuthFailure("internal", 500)
        for message, link in waiters:
            self._auth_failed(message, link, reason)

    def _auth_failed(
        self, message: Message, link: ClientLink, failure: AuthFailure
    ) -> None:
        self.metrics.auth_failures[failure.reason] += 1
        ip = link.address[0]
        suppressed = self._log_throttle.admit(ip, failure.reason)
        if suppressed is not None:
            log.warn(
                "TURN credentials rejected from {client}: {reason}"
                " ({suppressed} similar lines suppressed)",
                client=ip,
                reason=failure.reason,
                suppressed=suppressed,
            )
        if failure.code == 401:
            self._challenge(message, link, 401)
        else:
            self._error(message, link, failure.code)

    def _challenge(self, message: Message, link: ClientLink, code: int) -> None:
        attrs = [
            (codec.REALM, self._realm_attr),
            (codec.NONCE, self._nonces.issue(link.address[0])),
        ]
        self._error(message, link, code, None, (), attrs)

    # -- requests ----------------------------------------------------------

    def _dispatch(self, message: Message, link: ClientLink, cred: Credential) -> None:
        method = message.method
        if method == codec.METHOD_ALLOCATE:
            self._allocate(message, link, cred)
            return
        allocation = self.allocations.get(link.allocation_key)
        if allocation is None:
            raise _Reject(437)
        if allocation.username != _username(message):
            raise _Reject(441)
        if message.unknown:
            raise _Reject(420, message.unknown)
        if method == codec.METHOD_REFRESH:
            self._refresh(message, link, allocation)
        elif method == codec.METHOD_CREATE_PERMISSION:
            self._create_permission(message, link, allocation)
        else:
            self._channel_bind(message, link, allocation)

    def _allocate(self, message: Message, link: ClientLink, cred: Credential) -> None:
        attrs = message.attrs
        existing = self.allocations.get(link.allocation_key)
        if existing is not None:
            if existing.transaction_id == message.transaction_id:
                self._allocate_success(message, link, existing, None)
                return
            raise _Reject(437)
        if message.unknown:
            raise _Reject(420, message.unknown)
        transport = attrs.get(codec.REQUESTED_TRANSPORT)
        if transport is None:
            raise _Reject(400)
        if codec.decode_requested_transport(transport) != codec.TRANSPORT_UDP:
            raise _Reject(442)
        if codec.DONT_FRAGMENT in attrs:
            raise _Reject(420, [codec.DONT_FRAGMENT])
        family = self._requested_family(message)
        token = attrs.get(codec.RESERVATION_TOKEN)
        even = attrs.get(codec.EVEN_PORT)
        if token is not None and (
            even is not None or codec.REQUESTED_ADDRESS_FAMILY in attrs
        ):
            raise _Reject(400)
        reserve = codec.decode_even_port(even) if even is not None else False
        if len(self.allocations) >= self._config.max_allocations_total:
            self._deny_quota(message, link, "total allocations", cred.principal, cred)
            return
        if self._per_principal[cred.principal] >= self._config.max_allocations_per_user:
            self._deny_quota(
                message, link, "allocations per user", cred.principal, cred
            )
            return
        lifetime = self._lifetime(message)
        now = self._clock.seconds()
        allocation = Allocation(
            link,
            _username(message),
            cred.principal,
            cred.key,
            ("", 0),
            family,
            now + lifetime,
            message.transaction_id,
        )
        new_token = self._bind_relay(allocation, token, even is not None, reserve, now)
        self.allocations[link.allocation_key] = allocation
        self._per_principal[cred.principal] += 1
        self.metrics.allocations_total += 1
        if self._debug:
            log.debug(
                "allocation {relay} for {client} ({principal})",
                relay=allocation.relay_address,
                client=link.address,
                principal=cred.principal,
            )
        self._allocate_success(message, link, allocation, new_token)

    def _allocate_success(
        self,
        message: Message,
        link: ClientLink,
        allocation: Allocation,
        token: bytes | None,
    ) -> None:
        txid = message.transaction_id
        remaining = max(0, int(allocation.expires_at - self._clock.seconds()))
        relay_ip, relay_port = allocation.relay_address
        ip, port = link.address[0], link.address[1]
        attrs = [
            (
                codec.XOR_RELAYED_ADDRESS,
                codec.encode_xor_address(relay_ip, relay_port, txid),
            ),
            (codec.LIFETIME, codec.encode_u32(remaining)),
            (codec.XOR_MAPPED_ADDRESS, codec.encode_xor_address(ip, port, txid)),
        ]
        if token is not None:
            attrs.append((codec.RESERVATION_TOKEN, token))
        self._success(message, link, attrs, allocation.key)

    def _requested_family(self, message: Message) -> int:
        value = message.attrs.get(codec.REQUESTED_ADDRESS_FAMILY)
        if value is None:
            return codec.FAMILY_IPV4
        family = codec.decode_address_family(value)
        if family == codec.FAMILY_IPV4:
            return family
        if family == codec.FAMILY_IPV6 and self._config.relay_ipv6_ip:
            return family
        raise _Reject(440)

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
            reservation = self._reservations.pop(token, None)
            if reservation is None:
                raise _Reject(508)
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
        protocol = RelayProtocol(allocation, self.metrics)
        port, listening = self._open_from_pool(bind_ip, protocol, even)
        allocation.relay = protocol
        allocation.relay_port = listening
        allocation.relay_address = (advertised, port)
        if not reserve:
            return None
        return self._reserve(bind_ip, port + 1, now, allocation.family)

    def _open_from_pool(
        self, bind_ip: str, protocol: RelayProtocol, even: bool
    ) -> tuple[int, Any]:
        for _ in range(BIND_ATTEMPTS):
            port = self._ports.take(even)
            if port is None:
                break
            try:
                return port, self._open_relay(bind_ip, port, protocol)
            except CannotListenError:
                self._ports.release(port)
        log.warn("no relay port could be opened on {ip}", ip=bind_ip)
        raise _Reject(508)

    def _reserve(
        self, bind_ip: str, port: int, now: float, family: int
    ) -> bytes | None:
        if not self._ports.take_specific(port):
            return None
        protocol = RelayProtocol(None, self.metrics)
        try:
            listening = self._open_relay(bind_ip, port, protocol)
        except CannotListenError:
            self._ports.release(port)
            return None
        token = os.urandom(8)
        self._reservations[token] = _Reservation(
            port, listening, protocol, now + RESERVATION_LIFETIME, family
        )
        return token

    def _drop_reservation(self, token: bytes) -> Deferred[Any] | None:
        reservation = self._reservations.pop(token)
        return self._close_relay(reservation.relay_port, reservation.port)

    def _refresh(self, message: Message, link: ClientLink, alloc: Allocation) -> None:
        family = message.attrs.get(codec.REQUESTED_ADDRESS_FAMILY)
        if family is not None and codec.decode_address_family(family) != alloc.family:
            raise _Reject(443)
        value = message.attrs.get(codec.LIFETIME)
        key = alloc.key
        if value is not None and codec.decode_u32(value) == 0:
            self._delete(alloc, "refresh 0")
            lifetime = 0.0
        else:
            lifetime = self._lifetime(message)
            alloc.expires_at = self._clock.seconds() + lifetime
        self._success(
            message, link, [(codec.LIFETIME, codec.encode_u32(int(lifetime)))], key
        )

    def _peer_addresses(self, message: Message, alloc: Allocation) -> list[Any]:
        first = message.attrs.get(codec.XOR_PEER_ADDRESS)
        if first is None:
            raise _Reject(400)
        txid = message.transaction_id
        peers = []
        for value in (first, *message.extra_peers):
            ip, port = codec.decode_xor_address(value, txid)
            is_v6 = ":" in ip
            if is_v6 != (alloc.family == codec.FAMILY_IPV6):
                raise _Reject(443)
            peers.append((ip, port))
        return peers

    def _check_peer(self, alloc: Allocation, ip: str) -> None:
        rule = self._peers.denied_rule(ip)
        if rule is not None:
            self.metrics.denied_peers[rule] += 1
            log.warn(
                "peer {peer} refused for {principal}: {rule}",
                peer=ip,
                principal=alloc.principal,
                rule=rule,
            )
            raise _Reject(403)

    def _create_permission(
        self, message: Message, link: ClientLink, alloc: Allocation
    ) -> None:
        peers = self._peer_addresses(message, alloc)
        for ip, _ in peers:
            self._check_peer(alloc, ip)
        until = self._clock.seconds() + PERMISSION_LIFETIME
        for ip, _ in peers:
            alloc.permissions[ip] = until
        self._success(message, link, [], alloc.key)

    def _channel_bind(
        self, message: Message, link: ClientLink, alloc: Allocation
    ) -> None:
        value = message.attrs.get(codec.CHANNEL_NUMBER)
        if value is None:
            raise _Reject(400)
        number = codec.decode_channel_number(value)
        if not codec.CHANNEL_MIN <= number <= codec.CHANNEL_MAX:
            raise _Reject(400)
        peer = self._peer_addresses(message, alloc)[0]
        # RFC 5766 §11.2: a channel stays on its peer and a peer on its channel.
        bound = alloc.channels.get(number)
        if bound is not None and bound != peer:
            raise _Reject(400)
        other = alloc.peer_channels.get(peer)
        if other is not None and other != number:
            raise _Reject(400)
        self._check_peer(alloc, peer[0])
        now = self._clock.seconds()
        alloc.channels[number] = peer
        alloc.peer_channels[peer] = number
        alloc.channel_expiry[number] = now + CHANNEL_LIFETIME
        alloc.permissions[peer[0]] = now + PERMISSION_LIFETIME
        self._success(message, link, [], alloc.key)

    def _send_indication(self, message: Message, link: ClientLink) -> None:
        alloc = self.allocations.get(link.allocation_key)
        if alloc is None:
            return
        attrs = message.attrs
        value, data = attrs.get(codec.XOR_PEER_ADDRESS), attrs.get(codec.DATA)
        if value is None or data is None:
            self.metrics.malformed += 1
            return
        try:
            peer = codec.decode_xor_address(value, message.transaction_id)
        except codec.DecodeError:
            self.metrics.malformed += 1
            return
        if peer[0] not in alloc.permissions:
            self._refuse_send(alloc, peer[0])
            return
        alloc.send_to_peer(data, peer)
        self.metrics.relayed_packets_out += 1
        self.metrics.relayed_bytes_out += len(data)

    def _refuse_send(self, alloc: Allocation, ip: str) -> None:
        self.metrics.dropped_no_permission += 1
        rule = self._peers.denied_rule(ip)
        if rule is None:
            return
        self.metrics.denied_peers[rule] += 1
        logged = alloc.denied_logged
        if logged is None:
            logged = alloc.denied_logged = set()
        if ip not in logged and len(logged) < 16:
            logged.add(ip)
            log.warn(
                "Send to {peer} refused for {principal}: {rule}",
                peer=ip,
                principal=alloc.principal,
                rule=rule,
            )

    # -- allocation teardown and quotas ----------------------------------

    def _delete(self, alloc: Allocation, why: str) -> Deferred[Any] | None:
        key = alloc.link.allocation_key
        if self.allocations.get(key) is not alloc:
            return None
        del self.allocations[key]
        principal = alloc.principal
        self._per_principal[principal] -= 1
        if self._per_principal[principal] <= 0:
            del self._per_principal[principal]
        if self._debug:
            log.debug(
                "allocation {relay} deleted: {why}", relay=alloc.relay_address, why=why
            )
        alloc.link.allocation_deleted()
        relay, listening = alloc.relay, alloc.relay_port
        alloc.relay = alloc.relay_port = None
        if relay is not None:
            relay.allocation = None
        if listening is None:
            return None
        return self._close_relay(listening, alloc.relay_address[1])

    def _close_relay(self, listening: Any, port: int) -> Deferred[Any] | None:
        """Close a relay socket and return its port to the pool once closed."""
        try:
            result = listening.stopListening()
        except Exception:
            log.failure("while closing relay port {port}", port=port)
            result = None
        if not isinstance(result, Deferred):
            # A RelaySocket closes synchronously: no Deferred per allocation.
            self._ports.release(port)
            return None
        result.addBoth(lambda _: self._ports.release(port))
        return result

    def _deny_quota(
        self,
        message: Message,
        link: ClientLink,
        rule: str,
        who: str,
        cred: Credential | None = None,
    ) -> None:
        ip = link.address[0]
        suppressed = self._log_throttle.admit(ip, rule)
        if suppressed is not None:
            log.warn(
                "allocation refused for {who} from {client}: {rule}"
                " ({suppressed} similar lines suppressed)",
                who=who,
                client=ip,
                rule=rule,
                suppressed=suppressed,
            )
        self._error(message, link, 486, None if cred is None else cred.key)

    # -- responses ---------------------------------------------------------

    def _success(
        self,
        message: Message,
        link: ClientLink,
        attrs: list[tuple[int, bytes]],
        key: bytes,
    ) -> None:
        response = codec.encode(
            message.msg_type | codec.CLASS_SUCCESS,
            message.transaction_id,
            attrs + self._software,
            key=key,
            fingerprint=message.fingerprint,
        )
        link.send(response)

    def _error(
        self,
        message: Message,
        link: ClientLink,
        code: int,
        key: bytes | None = None,
        unknown: Iterable[int] = (),
        extra: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        self.metrics.rejected[code] += 1
        if self._debug:
            log.debug(
                "error {code} to 0x{method:03x} from {client}",
                code=code,
                method=message.method,
                client=link.address,
            )
        attrs = [(codec.ERROR_CODE, codec.encode_error_code(code))]
        unknown = list(unknown)
        if unknown:
            attrs.append(
                (codec.UNKNOWN_ATTRIBUTES, codec.encode_unknown_attributes(unknown))
            )
        attrs.extend(extra)
        attrs.extend(self._software)
        response = codec.encode(
            (message.msg_type & ~codec.CLASS_MASK) | codec.CLASS_ERROR,
            message.transaction_id,
            attrs,
            key=key,
            fingerprint=message.fingerprint,
        )
        link.send(response)


def debug_enabled() -> bool:
    """Whether the process-wide log level lets this module's debug lines out."""
    return LEVELS(_DEBUG_PROBE) is not PredicateResult.no


def _username(message: Message) -> str:
    raw = message.attrs.get(codec.USERNAME, b"")
    return raw.decode("utf-8", "replace")
