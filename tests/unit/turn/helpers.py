"""In-memory pieces for TURN unit tests: client links, relay sockets, a client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from actrix.core.config import Secret, TurnConfig, TurnUser
from actrix.core.interfaces import CredentialValidator, RealmDirectory
from actrix.stun import codec
from actrix.turn.auth import TurnAuth
from actrix.turn.metrics import TurnMetrics
from actrix.turn.service import TurnService

REALM = "actor-rtc.local"
CLIENT = ("192.0.2.10", 40000)
PEER = ("203.0.113.5", 5000)


def turn_config(**changes: Any) -> TurnConfig:
    """A TurnConfig with one static user and a REST secret, relays 50000-50009."""
    base = TurnConfig(
        advertised_ip="198.51.100.1",
        advertised_port=3478,
        relay_port_range=(50000, 50009),
        realm=REALM,
        static_auth_secret=Secret("rest-secret"),
        users=(TurnUser("alice", Secret("alice-password")),),
    )
    return attrs.evolve(base, **changes)


class FakeLink:
    """A client link that records what the service sends."""

    pad = False
    transport_name = "udp"

    def __init__(self, address: tuple[str, int] = CLIENT) -> None:
        self.address = address
        self.allocation_key: Any = address
        self.sent: list[bytes] = []
        self.deletions = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def deliver(self, data: bytes) -> None:
        self.sent.append(data)

    def allocation_deleted(self) -> None:
        self.deletions += 1


class FakeRelayPort:
    """What the fake opener returns: records stopListening."""

    def __init__(self, opener: FakeRelays, port: int) -> None:
        self._opener = opener
        self.port = port

    def stopListening(self) -> None:
        self._opener.closed.append(self.port)
        del self._opener.open[self.port]


class FakeRelays:
    """A relay-socket opener over FakeDatagramTransports."""

    def __init__(self, busy: Iterable[int] = ()) -> None:
        self.open: dict[int, tuple[Any, FakeDatagramTransport]] = {}
        self.closed: list[int] = []
        self.busy = set(busy)

    def __call__(self, ip: str, port: int, protocol: Any) -> Any:
        if port in self.busy or port in self.open:
            raise CannotListenError(ip, port, OSError("in use"))
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)
        self.open[port] = (protocol, transport)
        return FakeRelayPort(self, port)

    def peer_sends(self, port: int, data: bytes, peer: tuple[str, int]) -> None:
        """Deliver a datagram from ``peer`` to relay ``port``."""
        self.open[port][0].datagramReceived(data, peer)

    def written(self, port: int) -> list[tuple[bytes, Any]]:
        """Datagrams the relay on ``port`` sent to peers."""
        return self.open[port][1].written


class Harness:
    """A TurnService on a task.Clock with fake relays."""

    def __init__(
        self,
        config: TurnConfig | None = None,
        validator: CredentialValidator | None = None,
        realms: RealmDirectory | None = None,
        software: str = "actrix-test",
        drain_probe: Any = None,
        tcp_openers: Any = None,
        account_traffic: bool = False,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.config = config or turn_config()
        self.metrics = TurnMetrics()
        self.relays = FakeRelays()
        self.auth = TurnAuth(
            self.clock,
            self.config.realm,
            users=self.config.users,
            rest_secrets=self.config.rest_secrets,
            validator=validator,
            realms=realms,
        )
        self.service = TurnService(
            self.config,
            self.clock,
            self.auth,
            self.metrics,
            self.relays,
            relay_bind_ip="0.0.0.0",
            software=software,
            drain_probe=drain_probe,
            tcp_openers=tcp_openers,
            account_traffic=account_traffic,
        )
        self.service.startService()

    def client(
        self,
        address: tuple[str, int] = CLIENT,
        username: str = "alice",
        password: str = "alice-password",  # noqa: S107 (test fixture)
    ) -> TurnClient:
        return TurnClient(self, FakeLink(address), username, password)


class TurnClient:
    """Builds authenticated requests and returns the decoded answers."""

    def __init__(
        self, harness: Harness, link: FakeLink, username: str, password: str
    ) -> None:
        self.harness = harness
        self.link = link
        self.username = username
        self.password = password
        self.nonce: bytes | None = None
        self._counter = 0

    @property
    def key(self) -> bytes:
        return codec.long_term_key(self.username, REALM, self.password)

    def txid(self) -> bytes:
        self._counter += 1
        return self._counter.to_bytes(12, "big")

    def send(
        self,
        method: int,
        attrs: Iterable[tuple[int, bytes]] = (),
        *,
        auth: bool = True,
        txid: bytes | None = None,
        fingerprint: bool = False,
    ) -> codec.Message | None:
        """Send one request (fetching a nonce first when needed); the reply or None."""
        if auth and self.nonce is None:
            self.nonce = self._fetch_nonce()
        txid = txid or self.txid()
        attrs = list(attrs)
        key = None
        if auth:
            assert self.nonce is not None
            attrs += [
                (codec.USERNAME, self.username.encode()),
                (codec.REALM, REALM.encode()),
                (codec.NONCE, self.nonce),
            ]
            key = self.key
        data = codec.encode(
            codec.message_type(method, codec.CLASS_REQUEST),
            txid,
            attrs,
            key=key,
            fingerprint=fingerprint,
        )
        return self.deliver(data)

    def deliver(self, data: bytes) -> codec.Message | None:
        before = len(self.link.sent)
        self.harness.service.handle_message(codec.decode(data), self.link)
        if len(self.link.sent) == before:
            return None
        return codec.decode(self.link.sent[-1])

    def _fetch_nonce(self) -> bytes:
        reply = self.send(codec.METHOD_ALLOCATE, _transport(), auth=False)
        assert reply is not None
        return reply.attrs[codec.NONCE]

    def allocate(self, *extra: tuple[int, bytes]) -> codec.Message:
        reply = self.send(codec.METHOD_ALLOCATE, [*_transport(), *extra])
        assert reply is not None
        return reply

    def permit(self, *peers: tuple[str, int]) -> codec.Message:
        txid = self.txid()
        attrs = [
            (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(ip, port, txid))
            for ip, port in peers
        ]
        reply = self.send(codec.METHOD_CREATE_PERMISSION, attrs, txid=txid)
        assert reply is not None
        return reply

    def bind(self, channel: int, peer: tuple[str, int]) -> codec.Message:
        txid = self.txid()
        reply = self.send(
            codec.METHOD_CHANNEL_BIND,
            [
                (codec.CHANNEL_NUMBER, codec.encode_channel_number(channel)),
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*peer, txid)),
            ],
            txid=txid,
        )
        assert reply is not None
        return reply

    def refresh(self, lifetime: int | None = None) -> codec.Message:
        attrs = (
            [] if lifetime is None else [(codec.LIFETIME, codec.encode_u32(lifetime))]
        )
        reply = self.send(codec.METHOD_REFRESH, attrs)
        assert reply is not None
        return reply


def _transport() -> list[tuple[int, bytes]]:
    return [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())]


def error_code(message: codec.Message) -> int | None:
    """The ERROR-CODE of a response, or None for a success."""
    value = message.attrs.get(codec.ERROR_CODE)
    return None if value is None else codec.decode_error_code(value)[0]


def relayed_address(message: codec.Message) -> tuple[str, int]:
    return codec.decode_xor_address(
        message.attrs[codec.XOR_RELAYED_ADDRESS], message.transaction_id
    )
