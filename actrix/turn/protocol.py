"""TURN over UDP on ``bind.ice``: the hot path from datagram to relay socket.

One :class:`TurnUdpProtocol` serves every UDP client. ChannelData (first byte
0x40-0x7F) is relayed inline: allocation by client address (dict), channel
(dict), permission (dict), one ``write``. STUN Binding is answered by the
shared :class:`~actrix.stun.protocol.BindingResponder`; every other STUN
message goes to :meth:`TurnService.handle_message`. Anything else is dropped.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Final

from twisted.internet.protocol import DatagramProtocol

from actrix.stun import codec
from actrix.stun.protocol import BindingResponder
from actrix.turn.allocation import Sender, UdpLink, drop_datagram, fast_sender
from actrix.turn.service import TurnService

SOCKET_BUFFER: Final = 4 << 20


class TurnUdpProtocol(DatagramProtocol):
    """STUN and TURN on one UDP socket."""

    transport: Any

    def __init__(self, service: TurnService, responder: BindingResponder) -> None:
        self._service = service
        self._allocations = service.allocations
        self._metrics = service.metrics
        self._responder = responder
        self._sendto: Sender = drop_datagram

    def startProtocol(self) -> None:
        self._sendto = fast_sender(self.transport)
        sock = getattr(self.transport, "socket", None)
        if isinstance(sock, socket.socket):
            # Every client shares this socket: a burst of ChannelData from many
            # allocations overflows the default ~200 KB buffer and is lost.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        first = data[0]
        if first >= 0x40:
            allocation = self._allocations.get(addr)
            if allocation is None or first > 0x7F or len(data) < 4:
                self._metrics.malformed += 1
                return
            # Inline copy of TurnService.channel_data: this is the hottest path.
            peer = allocation.channels.get((first << 8) | data[1])
            if peer is None or peer[0] not in allocation.permissions:
                self._metrics.dropped_no_permission += 1
                return
            length = (data[2] << 8) | data[3]
            if length + 4 > len(data):
                self._metrics.malformed += 1
                return
            relay = allocation.relay
            if relay is not None:
                relay.sendto(data[4 : 4 + length], peer)
                metrics = self._metrics
                metrics.relayed_packets_out += 1
                metrics.relayed_bytes_out += length
            return
        try:
            message = codec.decode(data)
        except codec.DecodeError:
            self._metrics.malformed += 1
            return
        if message.msg_type == codec.BINDING_REQUEST:
            reply = self._responder.answer(message, addr[0], addr[1])
            if reply is not None:
                self._sendto(reply, addr)
            return
        self._service.handle_message(message, UdpLink(self._sendto, addr))
