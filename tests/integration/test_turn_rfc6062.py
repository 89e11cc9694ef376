"""RFC 6062 TCP relays and ALTERNATE-DOMAIN over TLS: our own client, real sockets.

turnutils_uclient -T (test_turn_clients) covers both RFC 6062 directions the
way coturn's client does; here each direction is driven step by step on
loopback so every message is checked: a peer connecting *to* the relayed
transport address (ConnectionAttempt to the client, then ConnectionBind on a
new connection) and the client's own Connect. The client is a small blocking
STUN-over-TCP/TLS client run in a thread (``deferToThread``), so the daemon
keeps running on the test's reactor.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from actrix.stun import codec
from tests.integration.test_turn_clients import _Daemon

USER, PASSWORD = "alice", "alice-password"
TIMEOUT = 5.0


class _StreamClient:
    """Blocking STUN over TCP or TLS: authenticated requests, indications kept."""

    def __init__(
        self, opened: list[socket.socket], port: int, tls: bool = False
    ) -> None:
        sock = _connect(opened, ("127.0.0.1", port))
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
            sock = context.wrap_socket(sock)
        opened.append(sock)
        self.sock = sock
        self.buffer = b""
        self.indications: list[codec.Message] = []
        self._auth: tuple[bytes, bytes] | None = None  # (realm, nonce)

    def frame(self) -> bytes:
        """The next STUN message (or ChannelData frame) from the stream."""
        while True:
            if len(self.buffer) >= 4:
                size = codec.frame_size(self.buffer)
                if len(self.buffer) >= size:
                    frame, self.buffer = self.buffer[:size], self.buffer[size:]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def request(self, method: int, attrs: list[tuple[int, bytes]]) -> codec.Message:
        """Send a request (signed once a nonce is known); 401/438 are retried."""
        for _ in range(3):
            txid = os.urandom(12)
            extra: list[tuple[int, bytes]] = []
            key = None
            if self._auth is not None:
                realm, nonce = self._auth
                extra = [
                    (codec.USERNAME, USER.encode()),
                    (codec.REALM, realm),
                    (codec.NONCE, nonce),
                ]
                key = codec.long_term_key(USER, realm.decode(), PASSWORD)
            msg_type = codec.message_type(method, codec.CLASS_REQUEST)
            self.sock.sendall(codec.encode(msg_type, txid, attrs + extra, key=key))
            reply = self.next_message()
            while reply.transaction_id != txid:
                self.indications.append(reply)
                reply = self.next_message()
            if _code(reply) in (401, 438):
                self._auth = (reply.attrs[codec.REALM], reply.attrs[codec.NONCE])
                continue
            return reply
        raise AssertionError("still unauthorized")

    def next_message(self) -> codec.Message:
        return codec.decode(self.frame())

    def indication(self) -> codec.Message:
        """The next indication (one that arrived during a request first)."""
        if self.indications:
            return self.indications.pop(0)
        return self.next_message()

    def allocate_tcp(self) -> tuple[str, int]:
        reply = self.request(
            codec.METHOD_ALLOCATE,
            [
                (
                    codec.REQUESTED_TRANSPORT,
                    codec.encode_requested_transport(codec.TRANSPORT_TCP),
                )
            ],
        )
        assert _code(reply) is None, _code(reply)
        return codec.decode_xor_address(
            reply.attrs[codec.XOR_RELAYED_ADDRESS], reply.transaction_id
        )

    def peer_request(self, method: int, peer: tuple[str, int]) -> codec.Message:
        # An IPv4 XOR address depends on the magic cookie only, so any
        # transaction id encodes it (request() picks its own).
        value = codec.encode_xor_address(peer[0], peer[1], bytes(12))
        return self.request(method, [(codec.XOR_PEER_ADDRESS, value)])

    def bind(self, connection_id: int) -> codec.Message:
        return self.request(
            codec.METHOD_CONNECTION_BIND,
            [(codec.CONNECTION_ID, codec.encode_u32(connection_id))],
        )

    def raw(self, size: int) -> bytes:
        """``size`` bytes of a spliced data connection (what was buffered first)."""
        data = self.buffer
        while len(data) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        self.buffer = data[size:]
        return data[:size]

    def close(self) -> None:
        self.sock.close()


def _code(message: codec.Message) -> int | None:
    value = message.attrs.get(codec.ERROR_CODE)
    return None if value is None else codec.decode_error_code(value)[0]


def _connect(opened: list[socket.socket], address: tuple[str, int]) -> socket.socket:
    """A blocking TCP connection, closed at the test's cleanup if still open."""
    sock = socket.create_connection(address, timeout=TIMEOUT)
    opened.append(sock)
    return sock


async def _close_all(opened: list[socket.socket]) -> None:
    """Close what a scenario left open (it failed) and let the daemon notice."""
    for sock in opened:
        sock.close()
    await deferLater(reactor, 0.2)


def _closed(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (FIN or RST) before sending more."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class TcpRelayTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.daemon = _Daemon(self)
        self.turn: Any = self.daemon.root.sessions.getServiceNamed("turn")
        self.port = self.daemon.port("ice-tcp")

    async def _all_returned(self, free: int) -> None:
        for _ in range(50):
            if (
                not self.turn.allocations
                and self.turn.tcp_connections == 0
                and self.turn.health()["relay_ports_free"] == free
            ):
                break
            await deferLater(reactor, 0.1)
        self.assertEqual(self.turn.allocations, {})
        self.assertEqual(self.turn.tcp_connections, 0)
        self.assertEqual(self.turn.health()["relay_ports_free"], free)

    async def test_peer_connects_to_the_relayed_address(self) -> None:
        """A peer connects in: ConnectionAttempt, ConnectionBind, bytes both ways."""
        free = self.turn.health()["relay_ports_free"]
        opened: list[socket.socket] = []
        self.addCleanup(_close_all, opened)

        def scenario() -> dict[str, Any]:
            control = _StreamClient(opened, self.port)
            relayed = control.allocate_tcp()
            # Without a permission the relay refuses the peer.
            try:
                early = _connect(opened, relayed)
            except ConnectionResetError:
                refused = True  # the abort came before connect() returned
            else:
                refused = _closed(early)
                early.close()
            reply = control.peer_request(
                codec.METHOD_CREATE_PERMISSION, ("127.0.0.1", 0)
            )
            assert _code(reply) is None, _code(reply)
            peer = _connect(opened, relayed)
            peer_port = peer.getsockname()[1]
            peer.sendall(b"hello from the peer")  # held until the bind
            attempt = control.indication()
            connection_id = codec.decode_u32(attempt.attrs[codec.CONNECTION_ID])
            announced = codec.decode_xor_address(
                attempt.attrs[codec.XOR_PEER_ADDRESS], attempt.transaction_id
            )
            data = _StreamClient(opened, self.port)
            bound = data.bind(connection_id)
            from_peer = data.raw(len(b"hello from the peer"))
            data.sock.sendall(b"hello from the client")
            to_peer = _recv_exactly(peer, len(b"hello from the client"))
            again = _StreamClient(opened, self.port).bind(connection_id)  # used up: 400
            # Closing the peer closes the client's data connection.
            peer.close()
            data_closed = _closed(data.sock)
            control.request(
                codec.METHOD_REFRESH, [(codec.LIFETIME, codec.encode_u32(0))]
            )
            control.close()
            return {
                "refused": refused,
                "attempt": (attempt.method, attempt.msg_class),
                "announced": announced,
                "peer_port": peer_port,
                "bound": _code(bound),
                "from_peer": from_peer,
                "to_peer": to_peer,
                "again": _code(again),
                "data_closed": data_closed,
            }

        result = await deferToThread(scenario)
        self.assertTrue(result["refused"])
        self.assertEqual(
            result["attempt"],
            (codec.METHOD_CONNECTION_ATTEMPT, codec.CLASS_INDICATION),
        )
        self.assertEqual(result["announced"], ("127.0.0.1", result["peer_port"]))
        self.assertIsNone(result["bound"])
        self.assertEqual(result["from_peer"], b"hello from the peer")
        self.assertEqual(result["to_peer"], b"hello from the client")
        self.assertEqual(result["again"], 400)
        self.assertTrue(result["data_closed"])
        events = self.turn.metrics.tcp_connections
        self.assertEqual(events["accepted"], 1)
        self.assertEqual(events["refused_no_permission"], 1)
        self.assertEqual(events["bound"], 1)
        await self._all_returned(free)

    async def test_client_connects_to_a_peer(self) -> None:
        """Connect: the relay dials the peer; ConnectionBind splices the two."""
        free = self.turn.health()["relay_ports_free"]
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        listener.settimeout(TIMEOUT)
        peer_address = listener.getsockname()
        opened: list[socket.socket] = []
        self.addCleanup(_close_all, opened)

        def scenario() -> dict[str, Any]:
            control = _StreamClient(opened, self.port)
            relayed = control.allocate_tcp()
            reply = control.peer_request(codec.METHOD_CONNECT, peer_address)
            peer, dialled_from = listener.accept()
            opened.append(peer)
            connection_id = codec.decode_u32(reply.attrs[codec.CONNECTION_ID])
            duplicate = control.peer_request(codec.METHOD_CONNECT, peer_address)
            data = _StreamClient(opened, self.port)
            bound = data.bind(connection_id)
            data.sock.sendall(b"x" * 100_000)  # more than one segment
            to_peer = _recv_exactly(peer, 100_000)
            peer.sendall(b"answer")
            from_peer = data.raw(6)
            # Closing the client's data connection closes the peer's.
            data.close()
            peer_closed = _closed(peer)
            peer.close()
            control.request(
                codec.METHOD_REFRESH, [(codec.LIFETIME, codec.encode_u32(0))]
            )
            control.close()
            return {
                "connect": _code(reply),
                "relayed": relayed,
                "dialled_from": dialled_from,
                "duplicate": _code(duplicate),
                "bound": _code(bound),
                "to_peer": to_peer,
                "from_peer": from_peer,
                "peer_closed": peer_closed,
            }

        result = await deferToThread(scenario)
        self.assertIsNone(result["connect"])
        self.assertEqual(result["dialled_from"][0], result["relayed"][0])
        self.assertEqual(result["duplicate"], 446)
        self.assertIsNone(result["bound"])
        self.assertEqual(result["to_peer"], b"x" * 100_000)
        self.assertEqual(result["from_peer"], b"answer")
        self.assertTrue(result["peer_closed"])
        self.assertEqual(self.turn.metrics.tcp_connections["connect_ok"], 1)
        await self._all_returned(free)


class AlternateDomainTests(TestCase):
    timeout = 30

    async def test_tls_client_is_sent_the_alternate_domain(self) -> None:
        """Over the load bound: a TLS client's 300 names the TLS port and domain."""
        daemon = _Daemon(
            self,
            turn_extra=(
                "redirect_above = 1\n"
                "alternate_servers = [{ address = '127.0.0.9:3478',"
                " domain = 'turn-b.example.com', tls_port = 5349 }]\n"
            ),
        )
        tls, tcp = daemon.port("ice-tls"), daemon.port("ice-tcp")
        opened: list[socket.socket] = []
        self.addCleanup(_close_all, opened)

        def scenario() -> tuple[codec.Message, codec.Message]:
            first = _StreamClient(opened, tcp)
            first.allocate_tcp()  # the one allocation this node takes
            replies = []
            for port, secure in ((tls, True), (tcp, False)):
                client = _StreamClient(opened, port, tls=secure)
                replies.append(
                    client.request(
                        codec.METHOD_ALLOCATE,
                        [
                            (
                                codec.REQUESTED_TRANSPORT,
                                codec.encode_requested_transport(),
                            )
                        ],
                    )
                )
                client.close()
            first.close()
            return replies[0], replies[1]

        over_tls, over_tcp = await deferToThread(scenario)
        self.assertEqual(_code(over_tls), 300)
        self.assertEqual(
            codec.decode_address(over_tls.attrs[codec.ALTERNATE_SERVER]),
            ("127.0.0.9", 5349),
        )
        self.assertEqual(over_tls.attrs[codec.ALTERNATE_DOMAIN], b"turn-b.example.com")
        self.assertEqual(_code(over_tcp), 300)
        self.assertEqual(
            codec.decode_address(over_tcp.attrs[codec.ALTERNATE_SERVER]),
            ("127.0.0.9", 3478),
        )
        self.assertNotIn(codec.ALTERNATE_DOMAIN, over_tcp.attrs)
