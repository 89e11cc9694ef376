"""The ICE UDP port on real loopback sockets: ChannelData apart from requests.

Defect 8: a Binding flood must not make the kernel drop relayed ChannelData.
These tests fill the STUN socket's receive queue without running the reactor
(loopback delivery is synchronous, so what is queued is known) and then read
the port by hand.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from actrix.stun import codec
from actrix.turn.udp import STUN_READS_PER_TURN, IcePort, IceUDPListener

BINDING = codec.encode(codec.BINDING_REQUEST, bytes(12), [])


class _Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


class IcePortTests(TestCase):
    port: IcePort

    def setUp(self) -> None:
        self.protocol = _Recorder()
        listener = IceUDPListener(reactor, "127.0.0.1", 0, self.protocol)
        listener.startService()
        self.addCleanup(listener.stopService)
        port: Any = listener.port
        self.assertIsInstance(port, IcePort)
        self.port = port
        self.address = ("127.0.0.1", listener.bound_port)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.addCleanup(self.client.close)

    def test_channel_data_survives_a_full_request_queue(self) -> None:
        """With the STUN queue overflowing, every ChannelData datagram still arrives."""
        self.assertIsNotNone(self.port.data_socket)
        self.port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(2000):
            self.client.sendto(BINDING, self.address)
        channel_data = [
            codec.encode_channel_data(0x4001, bytes([i])) for i in range(50)
        ]
        for frame in channel_data:
            self.client.sendto(frame, self.address)
        data_socket = self.port.data_socket
        assert data_socket is not None
        data_socket.doRead()
        self.assertEqual(self.protocol.received, channel_data)
        for _ in range(2000 // STUN_READS_PER_TURN + 1):
            self.port.doRead()
        bindings = len(self.protocol.received) - len(channel_data)
        self.assertGreater(bindings, 0)
        self.assertLess(bindings, 2000)  # the small STUN queue did overflow

    def test_requests_are_read_in_bounded_turns(self) -> None:
        """One reactor turn reads at most STUN_READS_PER_TURN requests."""
        self.port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for _ in range(STUN_READS_PER_TURN + 10):
            self.client.sendto(BINDING, self.address)
        self.port.doRead()
        self.assertEqual(len(self.protocol.received), STUN_READS_PER_TURN)
        self.port.doRead()
        self.assertEqual(len(self.protocol.received), STUN_READS_PER_TURN + 10)

    def test_both_sockets_answer_from_one_address(self) -> None:
        """The data socket shares the STUN socket's address (what clients see)."""
        data_socket = self.port.data_socket
        assert data_socket is not None and data_socket.socket is not None
        self.assertEqual(
            data_socket.socket.getsockname(), self.port.socket.getsockname()
        )
