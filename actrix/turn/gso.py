"""UDP segmentation offload (GSO) for bursts of relayed datagrams to one client.

A relay socket's read loop often takes several datagrams from its peers at
once, and all of them go to the same client address. Sent one ``sendto`` at
a time, each pays a system call, a route lookup and a trip through the IP
output path (~3.8 µs each on loopback). With Linux's ``UDP_SEGMENT`` socket
option (4.18+) one ``sendmsg`` carries a run of equal-sized datagrams and the
kernel cuts it into separate datagrams on the way out (measured ~1.5 µs per
datagram for runs of 6); the client receives ordinary datagrams.

Rules (``udp_send_skb``): every segment but the last has the same size, the
last may be shorter; at most :data:`MAX_SEGMENTS` and one IP datagram's worth
of bytes per call; a segment must fit the path MTU. Runs are cut accordingly;
a run of one is a plain ``sendto``. A kernel without GSO (ENOPROTOOPT,
EOPNOTSUPP, EIO) turns it off for the socket, a segment above the path MTU
(EINVAL) lowers the largest segment tried, and either way that run is sent
datagram by datagram. A full buffer drops the run, as it would drop the
datagrams one by one.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any, Final

from twisted.logger import Logger

log = Logger()

UDP_SEGMENT: Final = 103  # <linux/udp.h>; not exported by Python 3.11's socket
MAX_SEGMENTS: Final = 64  # UDP_MAX_SEGMENTS of older kernels (newer: 128)
MAX_RUN_BYTES: Final = 65000  # one IP datagram's payload, with headroom
MAX_SEGMENT: Final = 1452  # fits a 1500-byte MTU over IPv6 (IPv4: 1472)
_NO_GSO: Final = frozenset({errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EIO})
_SEGMENT_SIZE = struct.Struct("=H")


class BatchSender:
    """Sends a list of datagrams to one address, in order, in as few calls as it can."""

    __slots__ = ("_sendmsg", "_sendto", "enabled", "max_segment", "runs")

    def __init__(self, sock: Any) -> None:
        self._sendto = sock.sendto
        self._sendmsg = sock.sendmsg
        self.enabled = sys.platform.startswith("linux")
        self.max_segment = MAX_SEGMENT
        self.runs = 0  # sendmsg calls that carried several datagrams

    def send(self, frames: list[bytes], address: Any) -> None:
        """Send every frame to ``address`` (errors drop, as for any UDP send)."""
        count = len(frames)
        start = 0
        while start < count:
            size = len(frames[start])
            end = start + 1
            if self.enabled and size <= self.max_segment:
                total = size
                while end < count and end - start < MAX_SEGMENTS:
                    length = len(frames[end])
                    if length > size or total + length > MAX_RUN_BYTES:
                        break
                    end += 1
                    total += length
                    if length < size:
                        break  # a shorter datagram can only end a run
            if end - start == 1:
                self._one(frames[start], address)
            else:
                self._run(frames[start:end], size, address)
            start = end

    def _one(self, frame: bytes, address: Any) -> None:
        try:  # noqa: SIM105 (suppress() would add a context manager per packet)
            self._sendto(frame, address)
        except OSError:
            pass

    def _run(self, run: list[bytes], size: int, address: Any) -> None:
        option = [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(size))]
        try:
            self._sendmsg([b"".join(run)], option, 0, address)
            self.runs += 1
            return
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                return  # the buffer is full: dropped, as UDP would
            if e.errno in _NO_GSO:
                self.enabled = False
                log.info("UDP GSO is not available here ({error})", error=e)
            elif e.errno == errno.EINVAL:
                self.max_segment = min(self.max_segment, size - 1)
        for frame in run:
            self._one(frame, address)
