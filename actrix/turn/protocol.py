"""TURN over UDP on ``bind.ice``: the hot path from datagram to relay socket.

One :class:`TurnUdpProtocol` serves every UDP client. ChannelData (first byte
0x40 or more) goes to the service's data path (:mod:`actrix.turn.datapath`,
shared with the TCP/TLS clients) before any STUN decoding. STUN Binding is
answered by the shared :class:`~actrix.stun.protocol.BindingResponder`; every
other STUN message goes to :meth:`TurnService.handle_message`. Anything else
is dropped.
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
        self._channel_data = service.data.channel_data
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
        if data[0] >= 0x40:
            self._channel_data(addr, data)
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
