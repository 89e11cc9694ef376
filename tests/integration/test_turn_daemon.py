"""TURN in a real daemon: relay sockets, actr credentials from AIS, realms, /metrics.

The daemon runs on the global reactor with KS + AIS + TURN (enable 28) and a
realm created beforehand. An actor registers through ``POST /ais/register``;
its credential becomes a TURN username (base122 of realm_id ‖ key_id ‖
token) and its PSK the password, exactly as the actr runtime builds them.
The TURN client here is a small Twisted UDP client; aioice is run once with
the same credentials to show a third-party client copes with the non-ASCII
username.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from actrix.core import base122
from actrix.core.config import (
    ENABLE_AIS,
    ENABLE_KS,
    ENABLE_TURN,
    ConfigError,
    TurnConfig,
)
from actrix.core.realms import STATUS_SUSPENDED, realms_path, set_realm_status_txn
from actrix.proto import actr_pb2
from actrix.root import ActrixService
from actrix.stun import codec, credentials
from actrix.stun.protocol import BindingResponder, StunTcpFactory
from actrix.turn.auth import TurnAuth
from actrix.turn.metrics import TurnMetrics
from actrix.turn.relay import RelaySocket, relay_opener
from actrix.turn.service import TurnService
from actrix.turn.tcp import TurnStreamFactory
from tests.daemon import add_realm, http_client, http_port, make_settings, start_daemon

HERE = Path(__file__).parent
REALM = "actor-rtc.local"
REALM_ID = 1001
ENABLE = ENABLE_KS | ENABLE_AIS | ENABLE_TURN

UdpReactor: Any = reactor  # the global reactor, typed loosely for listenUDP


async def _wait(d: Deferred[Any], seconds: float = 5.0) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


class _Peer(DatagramProtocol):
    """A UDP echo peer on 127.0.0.1."""

    transport: Any

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.transport.write(data, addr)


class TurnUdpClient(DatagramProtocol):
    """A minimal TURN client: one request at a time by transaction id."""

    transport: Any

    def __init__(self, server: tuple[str, int], username: str, password: str) -> None:
        self.server = server
        self.username = username
        self.key = codec.long_term_key(username, REALM, password)
        self.password = password
        self.nonce = b""
        self.channel_data: DeferredQueue[bytes] = DeferredQueue()
        self._waiting: dict[bytes, Deferred[codec.Message]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if data and data[0] >= 0x40:
            self.channel_data.put(data)
            return
        message = codec.decode(data)
        waiter = self._waiting.pop(message.transaction_id, None)
        if waiter is not None:
            waiter.callback(message)

    async def request(
        self,
        method: int,
        attrs: Iterable[tuple[int, bytes]] = (),
        *,
        txid: bytes | None = None,
        auth: bool = True,
        sha256: bool = False,
        hashed: bool = False,
    ) -> codec.Message:
        """Send one request (with the current nonce) and await its answer.

        ``sha256``: RFC 8489 SHA-256 key, PASSWORD-ALGORITHM(S) and
        MESSAGE-INTEGRITY-SHA256; ``hashed``: USERHASH instead of USERNAME.
        """
        txid = txid or os.urandom(12)
        attrs = list(attrs)
        key = None
        if auth:
            name = (
                (codec.USERHASH, credentials.userhash(self.username, REALM))
                if hashed
                else (codec.USERNAME, self.username.encode())
            )
            attrs += [name, (codec.REALM, REALM.encode()), (codec.NONCE, self.nonce)]
            key = self.key
            if sha256:
                key = credentials.long_term_key_sha256(
                    self.username, REALM, self.password
                )
                attrs += [
                    (
                        codec.PASSWORD_ALGORITHM,
                        credentials.encode_password_algorithm(2),
                    ),
                    (
                        codec.PASSWORD_ALGORITHMS,
                        credentials.encode_password_algorithms([2, 1]),
                    ),
                ]
        waiter: Deferred[codec.Message] = Deferred()
        self._waiting[txid] = waiter
        self.transport.write(
            codec.encode(
                codec.message_type(method, codec.CLASS_REQUEST),
                txid,
                attrs,
                key=key,
                sha256=sha256,
            ),
            self.server,
        )
        reply: codec.Message = await _wait(waiter)
        return reply

    async def allocate(
        self,
        *,
        sha256: bool = False,
        hashed: bool = False,
        extra: Iterable[tuple[int, bytes]] = (),
    ) -> codec.Message:
        """401 for a nonce, then the authenticated Allocate; returns the answer."""
        transport = [
            (codec.REQUESTED_TRANSPORT, codec.encode_requested_transport()),
            *extra,
        ]
        challenge = await self.request(codec.METHOD_ALLOCATE, transport, auth=False)
        self.nonce = challenge.attrs[codec.NONCE]
        return await self.request(
            codec.METHOD_ALLOCATE, transport, sha256=sha256, hashed=hashed
        )

    async def bind(self, channel: int, peer: tuple[str, int]) -> codec.Message:
        txid = os.urandom(12)
        return await self.request(
            codec.METHOD_CHANNEL_BIND,
            [
                (codec.CHANNEL_NUMBER, codec.encode_channel_number(channel)),
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(*peer, txid)),
            ],
            txid=txid,
        )


def _error_code(message: codec.Message) -> int | None:
    value = message.attrs.get(codec.ERROR_CODE)
    return None if value is None else codec.decode_error_code(value)[0]


class _Daemon:
    """KS + AIS + TURN with realm ``REALM_ID`` created before start."""

    def __init__(self, test: TestCase, overrides: str = "") -> None:
        self.test = test
        self.directory = Path(test.mktemp())
        add_realm(self.directory, REALM_ID)
        self.root: ActrixService = start_daemon(
            test, make_settings(self.directory, enable=ENABLE, overrides=overrides)
        )
        self.http: Any = http_client(test)
        self.base = f"http://127.0.0.1:{http_port(self.root)}"
        self.ice = ("127.0.0.1", int(self.root.listener("ice-udp").bound_port))

    @property
    def turn(self) -> TurnService:
        service: TurnService = self.root.sessions.getServiceNamed("turn")
        return service

    async def register(self) -> tuple[str, str]:
        """Register an actor; its TURN (username, password) as actr builds them."""
        request = actr_pb2.RegisterRequest(
            actr_type=actr_pb2.ActrType(manufacturer="acme", name="turn-test"),
            realm=actr_pb2.Realm(realm_id=REALM_ID),
        )
        response = await _wait(
            self.http.post(
                f"{self.base}/ais/register",
                data=request.SerializeToString(),
                headers={b"content-type": [b"application/octet-stream"]},
            )
        )
        self.test.assertEqual(response.code, 200)
        body = actr_pb2.RegisterResponse.FromString(await _wait(response.content()))
        ok = body.success
        raw = (
            REALM_ID.to_bytes(4, "big")
            + ok.credential.token_key_id.to_bytes(4, "big")
            + ok.credential.encrypted_token
        )
        return base122.encode(raw), ok.psk.hex()

    def client(self, username: str, password: str) -> TurnUdpClient:
        client = TurnUdpClient(self.ice, username, password)
        port = UdpReactor.listenUDP(0, client, interface="127.0.0.1")
        self.test.addCleanup(port.stopListening)
        return client

    def peer(self) -> tuple[str, int]:
        port = UdpReactor.listenUDP(0, _Peer(), interface="127.0.0.1")
        self.test.addCleanup(port.stopListening)
        return ("127.0.0.1", port.getHost().port)

    def suspend_realm(self) -> None:
        """What ``actrix realm suspend`` does: one committed UPDATE on actrix.db."""
        conn = sqlite3.connect(realms_path(self.directory))
        try:
            with conn:
                set_realm_status_txn(
                    conn.cursor(), REALM_ID, STATUS_SUSPENDED, int(reactor.seconds())
                )
        finally:
            conn.close()

    async def metrics(self) -> dict[str, float]:
        """``GET /metrics`` parsed: sample name with sorted labels -> value."""
        response = await _wait(self.http.get(f"{self.base}/metrics"))
        self.test.assertEqual(response.code, 200)
        text = (await _wait(response.content())).decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples


class ActrCredentialTests(TestCase):
    timeout = 60

    async def test_actr_credentials_allocate_and_relay(self) -> None:
        """An AIS-registered actor allocates with its token and PSK and relays."""
        daemon = _Daemon(self)
        username, password = await daemon.register()
        self.assertTrue(any(ord(c) > 0x7F for c in username))  # real base122 text
        client = daemon.client(username, password)
        reply = await client.allocate()
        self.assertIsNone(_error_code(reply))
        self.assertTrue(codec.check_integrity(reply, client.key))
        relayed = codec.decode_xor_address(
            reply.attrs[codec.XOR_RELAYED_ADDRESS], reply.transaction_id
        )
        self.assertEqual(relayed[0], "127.0.0.1")
        peer = daemon.peer()
        self.assertIsNone(_error_code(await client.bind(0x4001, peer)))
        for i in range(5):
            payload = f"ping {i}".encode()
            client.transport.write(
                codec.encode_channel_data(0x4001, payload), daemon.ice
            )
            echoed = await _wait(client.channel_data.get())
            self.assertEqual(echoed, codec.encode_channel_data(0x4001, payload))
        self.assertEqual(daemon.turn.auth.cached_count, 1)

    async def test_actr_credentials_with_aioice(self) -> None:
        """aioice relays with the base122 username and hex-PSK password."""
        daemon = _Daemon(self)
        username, password = await daemon.register()
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            (
                str(HERE / "aioice_turn_client.py"),
                daemon.ice[0],
                str(daemon.ice[1]),
                "udp",
                username,
                password,
                "5",
            ),
            env=dict(os.environ),
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(result["echoed"], 5)

    async def test_suspended_realm_rejects_cached_key(self) -> None:
        """After the realm is suspended its allocation ends and the key is refused."""
        daemon = _Daemon(self)
        username, password = await daemon.register()
        first = daemon.client(username, password)
        self.assertIsNone(_error_code(await first.allocate()))
        self.assertEqual(daemon.turn.auth.cached_count, 1)
        daemon.suspend_realm()
        # The RealmCache notices the commit within its 1 s refresh.
        code: int | None = None
        for _ in range(25):
            await deferLater(reactor, 0.2)
            code = _error_code(await daemon.client(username, password).allocate())
            if code is not None:
                break
        self.assertEqual(code, 401)
        # Suspension ends the realm's allocations and drops its cached keys.
        self.assertEqual(daemon.turn.auth.cached_count, 0)
        self.assertEqual(len(daemon.turn.allocations), 0)
        self.assertEqual(daemon.turn.metrics.auth_failures["realm_inactive"], 1)
        # The terminated allocation cannot be refreshed either.
        refresh = await first.request(codec.METHOD_REFRESH)
        self.assertEqual(_error_code(refresh), 401)

    async def test_actr_credentials_with_sha256_and_userhash(self) -> None:
        """RFC 8489 over real UDP: SHA-256 key, MI-SHA256, then USERHASH; /metrics."""
        daemon = _Daemon(self)
        username, password = await daemon.register()
        named = daemon.client(username, password)
        reply = await named.allocate(sha256=True)
        self.assertIsNone(_error_code(reply))
        key = credentials.long_term_key_sha256(username, REALM, password)
        self.assertTrue(credentials.check_integrity_sha256(reply, key))
        hashed = daemon.client(username, password)
        reply = await hashed.allocate(sha256=True, hashed=True)
        self.assertIsNone(_error_code(reply))
        self.assertTrue(credentials.check_integrity_sha256(reply, key))
        samples = await daemon.metrics()
        self.assertEqual(
            samples[
                "actrix_turn_authenticated_requests_total"
                "{algorithm=sha256,integrity=sha256}"
            ],
            2,
        )
        self.assertEqual(samples["actrix_turn_userhash_requests_total{}"], 1)

    async def test_bad_actr_username_is_refused(self) -> None:
        """A token for an unknown key and an undecodable username get 401."""
        daemon = _Daemon(self)
        username, password = await daemon.register()
        raw = base122.decode(username)
        unknown_key = base122.encode(raw[:4] + (999_999).to_bytes(4, "big") + raw[8:])
        for name in (unknown_key, "\u0600\u0601"):
            reply = await daemon.client(name, password).allocate()
            self.assertEqual(_error_code(reply), 401)
        self.assertEqual(daemon.turn.metrics.auth_failures["bad_username"], 1)
        self.assertEqual(sum(daemon.turn.metrics.auth_failures.values()), 2)
        # The daemon keeps serving the valid actor.
        client = daemon.client(username, password)
        self.assertIsNone(_error_code(await client.allocate()))


class DualStackTests(TestCase):
    timeout = 30

    async def test_dual_allocation_relays_to_an_ipv6_peer(self) -> None:
        """ADDITIONAL-ADDRESS-FAMILY over real UDP: IPv4 + IPv6 relays, v6 echo."""
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            probe.bind(("::1", 0))
        except OSError as e:
            raise SkipTest(f"no IPv6 loopback: {e}") from e
        finally:
            probe.close()
        daemon = _Daemon(
            self,
            overrides=(
                '[turn]\nrelay_ipv6_ip = "::1"\n'
                'peer_allow = ["127.0.0.1/32", "::1/128"]\n'
            ),
        )
        username, password = await daemon.register()
        client = daemon.client(username, password)
        extra = (codec.ADDITIONAL_ADDRESS_FAMILY, codec.encode_address_family(2))
        reply = await client.allocate(extra=[extra])
        self.assertIsNone(_error_code(reply))
        local = ("127.0.0.1", client.transport.getHost().port)
        allocation = daemon.turn.allocations[local]
        assert allocation.relay6 is not None
        self.assertEqual(allocation.relay6.address[0], "::1")
        port = UdpReactor.listenUDP(0, _Peer(), interface="::1")
        self.addCleanup(port.stopListening)
        peer6 = ("::1", port.getHost().port)
        self.assertIsNone(_error_code(await client.bind(0x4001, peer6)))
        client.transport.write(codec.encode_channel_data(0x4001, b"six"), daemon.ice)
        echoed = await _wait(client.channel_data.get())
        self.assertEqual(echoed, codec.encode_channel_data(0x4001, b"six"))
        samples = await daemon.metrics()
        self.assertEqual(
            samples["actrix_turn_allocations_by_family_total{family=dual}"], 1
        )


class DrainTests(TestCase):
    timeout = 30

    async def test_drain_flag_redirects_and_health_says_draining(self) -> None:
        """`actrix turn drain`'s flag: 300 to the alternate, /health draining."""
        daemon = _Daemon(
            self, overrides='[turn]\nalternate_servers = ["127.0.0.9:3478"]\n'
        )
        username, password = await daemon.register()
        kept = daemon.client(username, password)
        self.assertIsNone(_error_code(await kept.allocate()))
        (daemon.directory / "turn.draining").touch()
        reply: codec.Message | None = None
        for _ in range(25):
            await deferLater(reactor, 0.1)
            reply = await daemon.client(username, password).allocate()
            if _error_code(reply) is not None:
                break
        assert reply is not None
        self.assertEqual(_error_code(reply), 300)
        self.assertEqual(
            codec.decode_address(reply.attrs[codec.ALTERNATE_SERVER]),
            ("127.0.0.9", 3478),
        )
        response = await _wait(daemon.http.get(f"{daemon.base}/health"))
        health = json.loads(await _wait(response.content()))
        self.assertEqual(health["status"], "draining")
        self.assertTrue(health["turn"]["draining"])
        # The allocations made before the sweep saw the flag are all still there.
        self.assertEqual(health["turn"]["allocations"], len(daemon.turn.allocations))
        self.assertIsNone(_error_code(await kept.request(codec.METHOD_REFRESH)))
        samples = await daemon.metrics()
        self.assertEqual(samples["actrix_turn_draining{}"], 1)
        self.assertEqual(samples["actrix_turn_redirected_total{reason=draining}"], 1)


class MetricsTests(TestCase):
    timeout = 30

    async def test_turn_counters_move_in_metrics(self) -> None:
        """GET /metrics shows TURN counters, moved by a Binding and an allocation."""
        daemon = _Daemon(self)
        before = await daemon.metrics()
        for name in (
            "actrix_turn_bindings_total{}",
            "actrix_turn_allocations_total{}",
            "actrix_turn_allocations_active{}",
            "actrix_turn_relayed_packets_total{direction=to_peer}",
            "actrix_turn_relayed_bytes_total{direction=to_client}",
            "actrix_turn_malformed_total{}",
        ):
            self.assertIn(name, before)
        client = daemon.client("alice", "alice-password")
        binding = await client.request(codec.METHOD_BINDING, auth=False)
        self.assertEqual(binding.msg_type, codec.BINDING_SUCCESS)
        self.assertIsNone(_error_code(await client.allocate()))
        peer = daemon.peer()
        self.assertIsNone(_error_code(await client.bind(0x4002, peer)))
        client.transport.write(codec.encode_channel_data(0x4002, b"12345"), daemon.ice)
        await _wait(client.channel_data.get())
        after = await daemon.metrics()

        def moved(name: str) -> float:
            return after[name] - before.get(name, 0.0)

        self.assertEqual(moved("actrix_turn_bindings_total{}"), 1)
        self.assertEqual(moved("actrix_turn_allocations_total{}"), 1)
        self.assertEqual(moved("actrix_turn_allocations_active{}"), 1)
        self.assertEqual(moved("actrix_turn_error_responses_total{code=401}"), 1)
        to_peer, to_client = "{direction=to_peer}", "{direction=to_client}"
        self.assertEqual(moved(f"actrix_turn_relayed_packets_total{to_peer}"), 1)
        self.assertEqual(moved(f"actrix_turn_relayed_bytes_total{to_peer}"), 5)
        self.assertEqual(moved(f"actrix_turn_relayed_packets_total{to_client}"), 1)


class _Inbox(DatagramProtocol):
    def __init__(self) -> None:
        self.received: DeferredQueue[tuple[bytes, Any]] = DeferredQueue()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.put((data, addr))


class RelaySocketTests(TestCase):
    timeout = 10

    async def test_relay_socket_relays_and_closes_quietly(self) -> None:
        """A relay socket reads and writes, closes at once and logs nothing."""
        peer = _Inbox()
        peer_port = UdpReactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(peer_port.stopListening)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        inbox = _Inbox()
        relay = relay_opener(UdpReactor)("127.0.0.1", 0, inbox)
        self.addCleanup(relay.stopListening)
        assert isinstance(relay, RelaySocket)
        assert relay.socket is not None
        address = relay.socket.getsockname()
        peer_port.write(b"to relay", address)
        data, source = await _wait(inbox.received.get())
        self.assertEqual((data, source[1]), (b"to relay", peer_port.getHost().port))
        relay.write(b"to peer", source)
        self.assertEqual((await _wait(peer.received.get()))[0], b"to peer")
        relay.stopListening()
        self.assertIsNone(relay.socket)
        self.assertIsNone(inbox.transport)
        self.assertNotIn(relay, UdpReactor.getReaders())
        # Closed synchronously: the same port can be bound again at once.
        again = relay_opener(UdpReactor)("127.0.0.1", address[1], _Inbox())
        again.stopListening()
        texts = [formatEvent(event) for event in events]
        self.assertEqual([t for t in texts if "UDP Port" in t or "starting" in t], [])

    async def test_ipv6_relay_socket(self) -> None:
        """An IPv6 relay socket delivers (host, port) pairs and is IPv6-only."""
        try:
            relay = relay_opener(UdpReactor)("::1", 0, inbox := _Inbox())
        except CannotListenError as e:
            raise SkipTest(f"no IPv6 loopback: {e}") from e
        self.addCleanup(relay.stopListening)
        assert isinstance(relay, RelaySocket) and relay.socket is not None
        v6only = relay.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        self.assertEqual(v6only, 1)
        sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("::1", 0))
        sender.sendto(b"six", relay.socket.getsockname())
        data, source = await _wait(inbox.received.get())
        self.assertEqual((data, source), (b"six", ("::1", sender.getsockname()[1])))

    def test_busy_port_raises_cannot_listen(self) -> None:
        """Opening a relay on a port in use raises CannotListenError."""
        first = relay_opener(UdpReactor)("127.0.0.1", 0, _Inbox())
        self.addCleanup(first.stopListening)
        assert isinstance(first, RelaySocket) and first.socket is not None
        taken = first.socket.getsockname()[1]
        with self.assertRaises(CannotListenError):
            relay_opener(UdpReactor)("127.0.0.1", taken, _Inbox())


class _Silent(Protocol):
    """A TCP client that sends nothing and reports when it is closed."""

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class StreamIdleTimeoutTests(TestCase):
    timeout = 20

    async def test_configured_idle_timeout_closes_tcp(self) -> None:
        """turn.stream_idle_timeout reaches the TCP listener of the daemon."""
        settings = make_settings(
            Path(self.mktemp()),
            enable=ENABLE_TURN,
            overrides="[turn]\nstream_idle_timeout = 1\n",
        )
        self.assertEqual(settings.turn.stream_idle_timeout, 1.0)
        root = start_daemon(self, settings)
        port = int(root.listener("ice-tcp").bound_port)
        silent = _Silent()
        started = reactor.seconds()
        await _wait(
            connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), silent)
        )
        await _wait(silent.closed, 10)
        elapsed = reactor.seconds() - started
        self.assertGreater(elapsed, 0.9)
        self.assertLess(elapsed, 5.0)

    def test_idle_timeout_below_one_second_is_refused(self) -> None:
        """A stream_idle_timeout under 1 s is a configuration error naming the key."""
        with self.assertRaises(ConfigError) as raised:
            make_settings(
                Path(self.mktemp()),
                enable=ENABLE_TURN,
                overrides="[turn]\nstream_idle_timeout = 0.5\n",
            )
        self.assertIn("turn.stream_idle_timeout", str(raised.exception))


class StreamStallTests(TestCase):
    timeout = 20

    async def test_client_that_never_reads_is_aborted(self) -> None:
        """A real TCP client that stops reading is aborted after the stall timeout."""
        metrics = TurnMetrics()
        service = TurnService(
            _stall_config(), reactor, TurnAuth(reactor, REALM), metrics, _no_relays
        )
        factory = TurnStreamFactory(
            service, BindingResponder("", metrics), "tcp", reactor, 30.0, 0.5
        )
        await self._never_read(factory, metrics)

    async def test_stun_only_client_that_never_reads_is_aborted(self) -> None:
        """The STUN-only TCP protocol aborts a real client that stops reading too."""
        metrics = TurnMetrics()
        factory = StunTcpFactory(
            BindingResponder("", metrics), metrics, reactor, 30.0, 0.5
        )
        await self._never_read(factory, metrics)

    async def _never_read(self, factory: Any, metrics: TurnMetrics) -> None:
        """Send Bindings and never read the answers until the server aborts."""
        tcp_reactor: Any = reactor  # listenTCP's stub wants a ServerFactory
        listening = tcp_reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", listening.getHost().port))
        client.setblocking(False)
        request = codec.encode(codec.BINDING_REQUEST, b"stall-txid12", [])
        started = reactor.seconds()
        sent = 0
        while metrics.stream_aborted == 0:
            self.assertLess(reactor.seconds() - started, 10, "never aborted")
            try:
                while sent < 200_000:  # until its buffers are full (a bound)
                    client.send(request * 50)
                    sent += 1
            except BlockingIOError:
                pass  # the server stopped reading: it is paused
            await deferLater(reactor, 0.05)
        self.assertGreater(reactor.seconds() - started, 0.5)
        self.assertGreater(metrics.bindings, 0)
        # The abort closes the socket on a later reactor turn: read what is
        # buffered until the reset arrives (bounded).
        deadline = reactor.seconds() + 5
        while True:
            self.assertLess(reactor.seconds(), deadline, "no reset seen")
            try:
                while client.recv(65536):
                    pass
            except BlockingIOError:
                await deferLater(reactor, 0.02)
                continue
            except ConnectionResetError:
                break
            self.fail("orderly close instead of an abort")


def _stall_config() -> TurnConfig:
    return TurnConfig(
        advertised_ip="127.0.0.1",
        advertised_port=3478,
        relay_port_range=(50000, 50009),
        realm=REALM,
    )


def _no_relays(ip: str, port: int, protocol: Any) -> Any:
    raise CannotListenError(ip, port, OSError("no relays in this test"))
