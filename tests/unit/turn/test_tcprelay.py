"""RFC 6062 TCP relays on fakes: Connect, ConnectionBind, ConnectionAttempt, splice."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from actrix.stun import codec
from actrix.stun.protocol import BindingResponder
from actrix.turn.tcp import TurnStreamProtocol
from actrix.turn.tcprelay import BIND_TIMEOUT, CLOSE_TIMEOUT, PeerConnection
from tests.unit.turn.helpers import REALM, Harness, turn_config
from tests.unit.turn.test_service import _capture_events

PEER = ("203.0.113.5", 5000)


class _Listening:
    def __init__(self, tcp: FakeTcp, port: int) -> None:
        self.tcp = tcp
        self.port = port

    def stopListening(self) -> None:
        self.tcp.stopped.append(self.port)
        del self.tcp.listening[self.port]


class FakeTcp:
    """listenTCP/connectTCP stand-ins that record what the relay asks for."""

    def __init__(self) -> None:
        self.listening: dict[int, Any] = {}
        self.stopped: list[int] = []
        self.connects: list[tuple[str, int, Any]] = []

    def listen(self, ip: str, port: int, factory: Any) -> _Listening:
        self.listening[port] = factory
        return _Listening(self, port)

    def connect(self, host: str, port: int, factory: Any, bind: str, t: float) -> None:
        self.connects.append((host, port, factory))


def _peer_transport(peer: tuple[str, int]) -> StringTransport:
    return StringTransport(peerAddress=IPv4Address("TCP", *peer))


class StreamClient:
    """A TurnStreamProtocol on a StringTransport, speaking authenticated STUN."""

    def __init__(self, harness: Harness, port: int) -> None:
        self.harness = harness
        self.protocol = TurnStreamProtocol(
            harness.service, BindingResponder("", harness.metrics), "tcp", harness.clock
        )
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.10", port)
        )
        self.protocol.makeConnection(self.transport)
        self.key = codec.long_term_key("alice", REALM, "alice-password")
        self.nonce = b""
        self.count = 0

    def request(self, method: int, attrs: list[tuple[int, bytes]]) -> codec.Message:
        """Send a signed request (fetching a nonce first); its decoded answer."""
        self.send(method, attrs)
        return codec.decode(self.transport.value())

    def send(self, method: int, attrs: list[tuple[int, bytes]]) -> None:
        """Send a signed request; the answer (if any yet) is in the transport."""
        if not self.nonce:
            self._write(method, attrs, signed=False)
            self.nonce = codec.decode(self.transport.value()).attrs[codec.NONCE]
        self._write(method, attrs, signed=True)

    def next_txid(self) -> bytes:
        """The transaction id the next signed request will carry."""
        return (self.count + (1 if self.nonce else 2)).to_bytes(12, "big")

    def _write(self, method: int, attrs: list[tuple[int, bytes]], signed: bool) -> None:
        self.count += 1
        txid = self.count.to_bytes(12, "big")
        if signed:
            attrs = [
                *attrs,
                (codec.USERNAME, b"alice"),
                (codec.REALM, REALM.encode()),
                (codec.NONCE, self.nonce),
            ]
        self.transport.clear()
        self.protocol.dataReceived(
            codec.encode(
                codec.message_type(method, codec.CLASS_REQUEST),
                txid,
                attrs,
                key=self.key if signed else None,
            )
        )

    def allocate_tcp(self) -> codec.Message:
        return self.request(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport(6))],
        )

    def peer_attrs(self, peer: tuple[str, int]) -> list[tuple[int, bytes]]:
        """XOR-PEER-ADDRESS for the next request (the XOR uses its txid)."""
        value = codec.encode_xor_address(*peer, self.next_txid())
        return [(codec.XOR_PEER_ADDRESS, value)]

    def peer_request(self, method: int, peer: tuple[str, int]) -> codec.Message:
        return self.request(method, self.peer_attrs(peer))


def _code(message: codec.Message) -> int | None:
    value = message.attrs.get(codec.ERROR_CODE)
    return None if value is None else codec.decode_error_code(value)[0]


class TcpRelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tcp = FakeTcp()
        self.harness = Harness(
            turn_config(), tcp_openers=(self.tcp.listen, self.tcp.connect)
        )
        self.control = StreamClient(self.harness, 40000)
        reply = self.control.allocate_tcp()
        self.assertIsNone(_code(reply))
        self.relay_port = codec.decode_xor_address(
            reply.attrs[codec.XOR_RELAYED_ADDRESS], reply.transaction_id
        )[1]
        self.assertIn(self.relay_port, self.tcp.listening)

    def _connect(self) -> tuple[PeerConnection, StringTransport, int]:
        """Connect to PEER and let the fake connection come up: (conn, t, id)."""
        self.control.send(codec.METHOD_CONNECT, self.control.peer_attrs(PEER))
        host, port, factory = self.tcp.connects[-1]
        self.assertEqual((host, port), PEER)
        connection = factory.buildProtocol(None)
        transport = _peer_transport(PEER)
        connection.makeConnection(transport)
        reply = codec.decode(self.control.transport.value())
        self.assertIsNone(_code(reply))
        connection_id = codec.decode_u32(reply.attrs[codec.CONNECTION_ID])
        return connection, transport, connection_id

    def _bind(self, connection_id: int, port: int = 40001) -> tuple[StreamClient, Any]:
        data = StreamClient(self.harness, port)
        reply = data.request(
            codec.METHOD_CONNECTION_BIND,
            [(codec.CONNECTION_ID, codec.encode_u32(connection_id))],
        )
        return data, reply

    def test_connect_bind_and_splice_both_ways(self) -> None:
        """Connect, then ConnectionBind: raw bytes both ways, paused until bound."""
        connection, peer_transport, connection_id = self._connect()
        self.assertEqual(peer_transport.producerState, "paused")
        data, reply = self._bind(connection_id)
        self.assertIsNone(_code(reply))
        self.assertEqual(peer_transport.producerState, "producing")
        data.transport.clear()
        data.protocol.dataReceived(b"raw bytes, not STUN")
        self.assertEqual(peer_transport.value(), b"raw bytes, not STUN")
        connection.dataReceived(b"answer")
        self.assertEqual(data.transport.value(), b"answer")
        # Each transport is the other's producer (backpressure both ways).
        self.assertIs(peer_transport.producer, data.transport)
        self.assertIs(data.transport.producer, peer_transport)
        self.assertEqual(self.harness.metrics.tcp_connections["bound"], 1)

    def test_second_connect_to_same_peer_is_446(self) -> None:
        """A Connect to a peer already connected gets 446."""
        self._connect()
        reply = self.control.peer_request(codec.METHOD_CONNECT, PEER)
        self.assertEqual(_code(reply), 446)

    def test_failed_connect_is_447(self) -> None:
        """A Connect whose TCP connection fails gets 447, and is forgotten."""
        self.control.send(codec.METHOD_CONNECT, self.control.peer_attrs(PEER))
        factory = self.tcp.connects[-1][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        reply = codec.decode(self.control.transport.value())
        self.assertEqual(_code(reply), 447)
        self.assertEqual(self.harness.service.tcp_connections, 0)
        self.control.send(codec.METHOD_CONNECT, self.control.peer_attrs(PEER))
        self.assertEqual(len(self.tcp.connects), 2)  # not refused as a duplicate

    def test_bind_for_expired_id_is_400_and_peer_closed(self) -> None:
        """No ConnectionBind within 30 s: the peer goes, and a late bind gets 400."""
        _, peer_transport, connection_id = self._connect()
        self.harness.clock.advance(BIND_TIMEOUT)
        self.assertTrue(peer_transport.disconnecting or peer_transport.disconnected)
        connection = self.tcp.connects[-1][2].connection
        connection.connectionLost()
        _, reply = self._bind(connection_id)
        self.assertEqual(_code(reply), 400)
        self.assertEqual(self.harness.metrics.tcp_connections["bind_timeout"], 1)
        self.assertEqual(self.harness.metrics.tcp_connections["bind_unknown"], 1)
        self.assertEqual(self.harness.service.tcp_connections, 0)

    def test_unknown_id_and_missing_id_are_400(self) -> None:
        """ConnectionBind, unknown or absent CONNECTION-ID: 400, logged once."""
        events = _capture_events(self)
        for port in (40005, 40006):
            _, reply = self._bind(12345, port)
            self.assertEqual(_code(reply), 400)
        lines = [e for e in events if "unknown or expired" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        data = StreamClient(self.harness, 40002)
        self.assertEqual(_code(data.request(codec.METHOD_CONNECTION_BIND, [])), 400)

    def test_half_open_peer_closes_the_data_connection(self) -> None:
        """When the peer side ends, the client data connection is closed too."""
        connection, _, connection_id = self._connect()
        data, _ = self._bind(connection_id)
        connection.connectionLost()
        self.assertTrue(data.transport.disconnecting)
        self.assertEqual(self.harness.service.tcp_connections, 0)

    def test_data_connection_loss_closes_the_peer(self) -> None:
        """When the client data connection ends, the peer connection is closed.

        Gracefully first (what the client sent is still written), and aborted
        if the peer has not taken it within CLOSE_TIMEOUT.
        """
        _, peer_transport, connection_id = self._connect()
        data, _ = self._bind(connection_id)
        data.protocol.dataReceived(b"last words")
        data.protocol.connectionLost()
        self.assertEqual(peer_transport.value(), b"last words")
        self.assertTrue(peer_transport.disconnecting)
        self.assertFalse(peer_transport.disconnected)
        self.harness.clock.advance(CLOSE_TIMEOUT)
        self.assertTrue(peer_transport.disconnected)

    def test_peer_that_closes_in_time_is_not_aborted(self) -> None:
        """A peer that completes the graceful close cancels the abort timer."""
        connection, peer_transport, connection_id = self._connect()
        data, _ = self._bind(connection_id)
        data.protocol.connectionLost()
        connection.connectionLost(Failure(ConnectionDone()))
        self.harness.clock.advance(CLOSE_TIMEOUT)
        self.assertFalse(peer_transport.disconnected)

    def test_incoming_peer_needs_permission_then_attempt(self) -> None:
        """A peer connecting in: refused without permission, else announced."""
        factory = self.tcp.listening[self.relay_port]
        refused = factory.buildProtocol(None)
        refused_transport = _peer_transport(PEER)
        refused.makeConnection(refused_transport)
        self.assertTrue(refused_transport.disconnected)
        self.assertIsNone(
            _code(self.control.peer_request(codec.METHOD_CREATE_PERMISSION, PEER))
        )
        self.control.transport.clear()
        accepted = factory.buildProtocol(None)
        accepted.makeConnection(_peer_transport(PEER))
        attempt = codec.decode(self.control.transport.value())
        self.assertEqual(attempt.method, codec.METHOD_CONNECTION_ATTEMPT)
        self.assertEqual(attempt.msg_class, codec.CLASS_INDICATION)
        connection_id = codec.decode_u32(attempt.attrs[codec.CONNECTION_ID])
        _, reply = self._bind(connection_id)
        self.assertIsNone(_code(reply))
        self.assertEqual(self.harness.metrics.tcp_connections["accepted"], 1)

    def test_deletion_closes_listener_and_connections(self) -> None:
        """Refresh 0 stops the listener (port back) and closes peer connections."""
        _, peer_transport, _ = self._connect()
        free = self.harness.service.health()["relay_ports_free"]
        reply = self.control.request(
            codec.METHOD_REFRESH, [(codec.LIFETIME, codec.encode_u32(0))]
        )
        self.assertIsNone(_code(reply))
        self.assertEqual(self.tcp.stopped, [self.relay_port])
        self.assertTrue(peer_transport.disconnected)
        self.assertEqual(self.harness.service.health()["relay_ports_free"], free + 1)

    def test_tcp_allocation_rules(self) -> None:
        """TCP over UDP, and ChannelBind on a TCP allocation, are 400."""
        udp = self.harness.client(("192.0.2.99", 1))
        reply = udp.send(
            codec.METHOD_ALLOCATE,
            [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport(6))],
        )
        assert reply is not None
        self.assertEqual(_code(reply), 400)
        bind = self.control.request(
            codec.METHOD_CHANNEL_BIND,
            [
                (codec.CHANNEL_NUMBER, codec.encode_channel_number(0x4001)),
                *self.control.peer_attrs(PEER),
            ],
        )
        self.assertEqual(_code(bind), 400)

    def test_tcp_relay_off_means_442(self) -> None:
        """Without TCP relays (turn.tcp_relay = false) TCP allocations get 442."""
        harness = Harness(
            turn_config(tcp_relay=False),
            tcp_openers=(self.tcp.listen, self.tcp.connect),
        )
        reply = StreamClient(harness, 40000).allocate_tcp()
        self.assertEqual(_code(reply), 442)
