"""TURN over UDP on ``bind.ice``: the hot path from datagram to relay socket.

One :class:`TurnUdpProtocol` serves every UDP client. ChannelData (first byte
0x40 or more) goes to the service's data path (:mod:`actrix.turn.datapath`,
shared with the TCP/TLS clients) before any STUN decoding. STUN Binding is
answered by the shared :class:`~actrix.stun.protocol.BindingResponder`; every
other STUN message goes to :meth:`TurnService.handle_message`. Anything else
is dropped.

Requests are bounded before they are decoded (defect 8): one larger than
``codec.MAX_REQUEST_UDP`` is dropped, and so is every request past
``turn.request_rate_per_ip`` per second from one source IP
(:class:`~actrix.turn.limits.RequestWindow`). Dropping costs about a
microsecond, so a Binding flood no longer fills the socket buffer and
ChannelData on the same port keeps flowing. Indications (Send) and
ChannelData are data and are never rate limited here.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Final

from twisted.internet.protocol import DatagramProtocol

from actrix.stun import codec
from actrix.stun.protocol import BARE_BINDING_PREFIX, BindingResponder
from actrix.turn.allocation import Sender, UdpLink, drop_datagram, fast_sender
from actrix.turn.gso import BatchSender
from actrix.turn.limits import RequestWindow
from actrix.turn.service import TurnService

SOCKET_BUFFER: Final = 4 << 20


class TurnUdpProtocol(DatagramProtocol):
    """STUN and TURN on one UDP socket."""

    transport: Any

    def __init__(self, service: TurnService, responder: BindingResponder) -> None:
        self._service = service
        self._channel_data = service.data.channel_data
        # The ICE port's data socket only ever reads ChannelData (its BPF
        # program steers by the first byte): it hands them straight here.
        self.steered_data = self._channel_data
        self._metrics = service.metrics
        self._responder = responder
        self._sendto: Sender = drop_datagram
        self._batch: BatchSender | None = None
        limit = service.request_rate_per_ip
        self._requests = RequestWindow(service.clock, limit) if limit else None

    def startProtocol(self) -> None:
        self._sendto = fast_sender(self.transport)
        sock = getattr(self.transport, "socket", None)
        if isinstance(sock, socket.socket):
            self._batch = BatchSender(sock)
            # Every client shares this socket: a burst of ChannelData from many
            # allocations overflows the default ~200 KB buffer and is lost.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        if data[0] >= 0x40:
            self._channel_data(data, addr)
            return
        if len(data) == codec.HEADER_SIZE and data[:8] == BARE_BINDING_PREFIX:
            # The most common request, answered without decoding.
            requests = self._requests
            if requests is not None and not requests.allow(addr[0]):
                self._metrics.dropped_requests["rate"] += 1
                return
            bare = self._responder.answer_bare(data, addr[0], addr[1])
            try:  # noqa: SIM105 (suppress() would add a context manager per packet)
                self._sendto(bare, addr)
            except OSError:
                pass  # a full buffer or an ICMP error: dropped, as UDP would
            return
        if codec.is_request(data):
            if len(data) > codec.MAX_REQUEST_UDP:
                self._metrics.dropped_requests["oversized"] += 1
                return
            requests = self._requests
            if requests is not None and not requests.allow(addr[0]):
                self._metrics.dropped_requests["rate"] += 1
                return
        try:
            message = codec.decode(data)
        except codec.DecodeError:
            self._metrics.malformed += 1
            return
        if message.msg_type == codec.BINDING_REQUEST:
            reply = self._responder.answer(message, addr[0], addr[1])
            if reply is not None:
                try:  # noqa: SIM105
                    self._sendto(reply, addr)
                except OSError:
                    pass
            return
        self._service.handle_message(message, UdpLink(self._sendto, addr, self._batch))
