"""A burst from a peer reaches the client in order through one UDP GSO send."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from actrix.stun import codec
from tests.integration.test_turn_clients import _Daemon

USER, PASSWORD = "alice", "alice-password"
BURST = 12


def _request(
    sock: socket.socket, method: int, attrs: list[tuple[int, bytes]]
) -> codec.Message:
    """One request, signed after the 401 that brings the nonce."""
    extra: list[tuple[int, bytes]] = []
    key = None
    for _ in range(2):
        txid = os.urandom(12)
        msg_type = codec.message_type(method, codec.CLASS_REQUEST)
        sock.send(codec.encode(msg_type, txid, attrs + extra, key=key))
        reply = codec.decode(sock.recv(2048))
        error = reply.attrs.get(codec.ERROR_CODE)
        if error is None or codec.decode_error_code(error)[0] != 401:
            return reply
        realm = reply.attrs[codec.REALM]
        extra = [
            (codec.USERNAME, USER.encode()),
            (codec.REALM, realm),
            (codec.NONCE, reply.attrs[codec.NONCE]),
        ]
        key = codec.long_term_key(USER, realm.decode(), PASSWORD)
    raise AssertionError("still unauthorized")


class GsoBurstTests(TestCase):
    timeout = 30

    async def test_peer_burst_arrives_in_order_as_separate_datagrams(self) -> None:
        """BURST datagrams read in one turn leave as one GSO run, all in order."""
        daemon = _Daemon(self)
        turn: Any = daemon.root.sessions.getServiceNamed("turn")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        client.connect(("127.0.0.1", daemon.port("ice-udp")))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        self.addCleanup(client.close)
        self.addCleanup(peer.close)
        peer_address = peer.getsockname()

        def allocate_and_bind() -> tuple[str, int]:
            reply = _request(
                client,
                codec.METHOD_ALLOCATE,
                [(codec.REQUESTED_TRANSPORT, codec.encode_requested_transport())],
            )
            relayed = codec.decode_xor_address(
                reply.attrs[codec.XOR_RELAYED_ADDRESS], reply.transaction_id
            )
            value = codec.encode_xor_address(
                peer_address[0], peer_address[1], bytes(12)
            )
            bound = _request(
                client,
                codec.METHOD_CHANNEL_BIND,
                [
                    (codec.CHANNEL_NUMBER, codec.encode_channel_number(0x4001)),
                    (codec.XOR_PEER_ADDRESS, value),
                ],
            )
            assert codec.ERROR_CODE not in bound.attrs
            return relayed

        relayed = await deferToThread(allocate_and_bind)
        # Sent from the reactor's thread without yielding: loopback delivery
        # is synchronous, so the relay socket holds all of them when it is read.
        payloads = [bytes([i]) * 100 for i in range(BURST)]
        for payload in payloads:
            peer.sendto(payload, relayed)

        def receive() -> list[bytes]:
            return [client.recv(2048) for _ in range(BURST)]

        received = await deferToThread(receive)
        self.assertEqual(
            received, [codec.encode_channel_data(0x4001, p) for p in payloads]
        )
        (allocation,) = turn.allocations.values()
        self.assertGreaterEqual(allocation.link.batch.runs, 1)
