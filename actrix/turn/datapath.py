"""The TURN data rule, in one place for UDP and stream clients and for peers.

ARCHITECTURE.md "Paths of data": ChannelData/Send → allocation by 5-tuple →
permission (dict) → relay socket ``write``; peer datagram → relay socket →
permission → ChannelData/Data to the client. :class:`DataPath` owns the
allocation table (keyed by the client's 5-tuple: its UDP address, or its
TCP/TLS connection object) and both client-to-peer entry points; the
allocator only adds and removes entries. :class:`RelayProtocol` is the
peer-to-client direction, one per relay socket. Everything is synchronous:
no authentication (that is for requests only), no Deferreds, one write. A
relay socket read by :class:`~actrix.turn.relay.RelaySocket` collects the
frames of one read loop and flushes them together: one UDP GSO send per run
of equal-sized frames (:mod:`actrix.turn.gso`), or one TCP write.
When bandwidth caps or the traffic line are configured, each relayed
datagram goes through the allocation's :class:`~actrix.turn.bandwidth.Meter`
(counted, or dropped over a cap); otherwise that costs one ``is None`` test.
"""

from __future__ import annotations

import random
import socket
import struct
from typing import Any, Final

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.turn.allocation import (
    Allocation,
    ClientLink,
    Sender,
    drop_datagram,
    fast_sender,
)
from actrix.turn.metrics import TurnMetrics
from actrix.turn.peers import PeerPolicy

log = Logger()

_CHANNEL_HEADER = struct.Struct("!HH")
_PADDING: Final = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
# The largest payload a Data indication can carry: the STUN length field is 16
# bits and holds XOR-PEER-ADDRESS (24 bytes for IPv6) and the DATA header too.
MAX_INDICATION_DATA: Final = 65535 - 24 - 4 - 3
MAX_DENIED_LOGGED: Final = 16  # distinct refused Send peers logged per allocation


class DataPath:
    """Client-to-peer relaying (ChannelData, Send) over the allocation table."""

    def __init__(self, metrics: TurnMetrics, peers: PeerPolicy) -> None:
        self.allocations: dict[Any, Allocation] = {}
        self._metrics = metrics
        self._peers = peers

    def has_allocation(self, key: Any) -> bool:
        """Whether the 5-tuple ``key`` holds an allocation."""
        return key in self.allocations

    def channel_data(self, data: bytes, key: Any) -> None:
        """Relay one ChannelData message from client ``key`` (UDP padding tolerated).

        Dropped (and counted) without an allocation, with a first byte outside
        0x40-0x7F, shorter than its header or length, or on a channel that is
        unbound or whose peer has no permission.
        """
        allocation = self.allocations.get(key)
        size = len(data)
        if allocation is None or size < 4 or data[0] > 0x7F:
            self._metrics.malformed += 1
            return
        peer = allocation.channels.get((data[0] << 8) | data[1])
        if peer is None or peer[0] not in allocation.permissions:
            self._metrics.dropped_no_permission += 1
            return
        length = (data[2] << 8) | data[3]
        if length + 4 > size:
            self._metrics.malformed += 1
            return
        relay = allocation.relay
        if allocation.relay6 is not None:
            relay = allocation.relay_for(peer[0])
        if relay is not None:
            metrics = self._metrics
            meter = allocation.meter
            if meter is not None and not meter.to_peer(length):
                metrics.bandwidth_dropped_out += 1
                return
            try:  # noqa: SIM105 (suppress() would add a context manager per packet)
                relay.sendto(data[4 : 4 + length], peer)
            except OSError:
                pass  # a full buffer or an ICMP error: dropped, as UDP would
            metrics.relayed_packets_out += 1
            metrics.relayed_bytes_out += length

    def send_indication(self, message: Message, key: Any) -> None:
        """Relay the DATA of a Send indication to its XOR-PEER-ADDRESS."""
        allocation = self.allocations.get(key)
        if allocation is None:
            return
        attrs = message.attrs
        value, data = attrs.get(codec.XOR_PEER_ADDRESS), attrs.get(codec.DATA)
        if value is None or data is None:
            self._metrics.malformed += 1
            return
        try:
            peer = codec.decode_xor_address(value, message.transaction_id)
        except codec.DecodeError:
            self._metrics.malformed += 1
            return
        if peer[0] not in allocation.permissions:
            self._refuse_send(allocation, peer[0])
            return
        size = len(data)
        meter = allocation.meter
        if meter is not None and not meter.to_peer(size):
            self._metrics.bandwidth_dropped_out += 1
            return
        allocation.send_to_peer(data, peer)
        self._metrics.relayed_packets_out += 1
        self._metrics.relayed_bytes_out += size

    def _refuse_send(self, allocation: Allocation, ip: str) -> None:
        self._metrics.dropped_no_permission += 1
        rule = self._peers.denied_rule(ip)
        if rule is None:
            return
        self._metrics.denied_peers[rule] += 1
        logged = allocation.denied_logged
        if logged is None:
            logged = allocation.denied_logged = set()
        if ip not in logged and len(logged) < MAX_DENIED_LOGGED:
            logged.add(ip)
            log.warn(
                "Send to {peer} refused for {principal}: {rule}",
                peer=ip,
                principal=allocation.principal,
                rule=rule,
            )


class RelayProtocol(DatagramProtocol):
    """The relay socket of one allocation: peer datagrams go to the client."""

    noisy = False  # one per allocation: no "Starting protocol" log line each

    def __init__(self, allocation: Allocation | None, metrics: TurnMetrics) -> None:
        self.allocation = allocation
        self._metrics = metrics
        self.sendto: Sender = drop_datagram
        # Set by the RelaySocket that reads us: frames wait in _pending until
        # its read loop ends, then go to the client in one flush().
        self.batched = False
        self._pending: list[bytes] = []

    def startProtocol(self) -> None:
        self.sendto = fast_sender(self.transport)

    def stopProtocol(self) -> None:
        self.sendto = drop_datagram

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        allocation = self.allocation
        if allocation is None:
            return  # a reserved port (EVEN-PORT R bit) not yet claimed
        if addr[0] not in allocation.permissions:
            self._metrics.dropped_no_permission += 1
            return
        size = len(data)
        meter = allocation.meter
        if meter is not None and not meter.to_client(size):
            self._metrics.bandwidth_dropped_in += 1
            return
        channel = allocation.peer_channels.get(addr)
        link: ClientLink = allocation.link
        if channel is not None:
            frame = _CHANNEL_HEADER.pack(channel, size) + data
            if size & 3 and link.pad:
                frame += _PADDING[size & 3]
        elif size <= MAX_INDICATION_DATA:
            frame = data_indication(addr, data)
        else:
            return  # an IPv6 peer's jumbo datagram cannot be framed: drop it
        if self.batched:
            self._pending.append(frame)
        else:
            link.deliver(frame)
        metrics = self._metrics
        metrics.relayed_packets_in += 1
        metrics.relayed_bytes_in += size

    def flush(self) -> None:
        """Send what the read loop collected to the client (one GSO send, one write)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        allocation = self.allocation
        if allocation is None:
            return
        if len(pending) == 1:
            allocation.link.deliver(pending[0])
        else:
            allocation.link.deliver_batch(pending)


# A Data indication from an IPv4 peer up to the DATA value: header,
# XOR-PEER-ADDRESS (which does not depend on the transaction id for IPv4)
# and the DATA attribute header, in one pack.
_DATA_V4 = struct.Struct("!HHI12sHHxBH4sHH")
_COOKIE_HIGH: Final = codec.MAGIC_COOKIE >> 16


def data_indication(peer: tuple[str, int], data: bytes) -> bytes:
    """A Data indication carrying ``data`` from ``peer`` (RFC 5766 §10.3)."""
    txid = random.randbytes(12)  # noqa: S311 (an indication id needs no secrecy)
    ip, port = peer
    try:
        packed = socket.inet_pton(socket.AF_INET, ip)
    except OSError:  # IPv6: the general encoder
        return codec.encode(
            codec.DATA_INDICATION,
            txid,
            (
                (codec.XOR_PEER_ADDRESS, codec.encode_xor_address(ip, port, txid)),
                (codec.DATA, data),
            ),
        )
    size = len(data)
    pad = -size & 3
    xored = (int.from_bytes(packed, "big") ^ codec.MAGIC_COOKIE).to_bytes(4, "big")
    head = _DATA_V4.pack(
        codec.DATA_INDICATION,
        16 + size + pad,
        codec.MAGIC_COOKIE,
        txid,
        codec.XOR_PEER_ADDRESS,
        8,
        codec.FAMILY_IPV4,
        port ^ _COOKIE_HIGH,
        xored,
        codec.DATA,
        size,
    )
    return head + data + _PADDING[size & 3] if pad else head + data
