"""The relay benchmark's cheap client side: pre-serialised frames, counted replies.

Used by ``bench/signaling.py`` (run as a script, so this directory is on the
path). A registered :class:`tests.signaling_client.SignalingClient` keeps its
socket; after registration the bench writes ready-made masked frames to it and
only splits and counts the frames that come back, so a worker spends a few
microseconds per relay and the figures describe the server.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any


def client_frame(payload: bytes) -> bytes:
    """A masked binary client frame whose mask key is zero (payload as is)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x82, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x82, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x82, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def server_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The whole unmasked server frames at the start of ``buf``: (opcode,
    payload) each, and where the first incomplete one begins."""
    frames: list[tuple[int, bytes]] = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        length = buf[pos + 1] & 0x7F
        head = 2
        if length == 126:
            if size - pos < 4:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        end = pos + head + length
        if end > size:
            break
        frames.append((buf[pos] & 0x0F, buf[pos + head : end]))
        pos = end
    return frames, pos


class RawLink:
    """The bench's cheap side of a registered client's socket.

    Frames go out pre-serialised; incoming server frames (unmasked) are only
    split and counted, never decoded, so the workers spend little CPU per
    message and the figures describe the server.
    """

    def __init__(self, client: Any, on_message: Callable[[], None]) -> None:
        protocol = client.protocol
        self.transport = protocol.transport
        self.transport.setTcpNoDelay(True)
        self._buffer = b""
        self._on_message = on_message
        protocol.dataReceived = self.feed

    def feed(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        frames, pos = server_frames(buf)
        for opcode, _ in frames:
            if opcode == 2:
                self._on_message()
        self._buffer = buf[pos:]


def relay_frames(sender: Any, target: Any, count: int = 4) -> list[bytes]:
    """One SessionDescription and ``count - 1`` IceCandidate relays, framed."""
    from actrix.proto import webrtc_pb2

    frames = []
    for i in range(count):
        envelope, body = sender.relay_envelope(target)
        if i == 0:
            body.session_description.CopyFrom(
                webrtc_pb2.SessionDescription(
                    type=webrtc_pb2.SessionDescription.OFFER, sdp="v=0 " * 40
                )
            )
        else:
            body.ice_candidate.candidate = (
                f"candidate:{i} 1 udp 2122260223 10.0.0.1 {5000 + i} typ host"
            )
        frames.append(client_frame(envelope.SerializeToString()))
    return frames


class RelayPair:
    """A sender and a receiver actor; relays of one pair arrive in order."""

    def __init__(self, sender: Any, receiver: Any, results: list[float]) -> None:
        self.frames = relay_frames(sender, receiver.actr_id)
        self.outstanding: deque[float] = deque()
        self.results = results
        self.sent = 0
        self.on_receive: Callable[[RelayPair], None] = lambda pair: None
        self._out = RawLink(sender, lambda: None).transport
        RawLink(receiver, self._received)

    def send(self) -> None:
        self.outstanding.append(time.monotonic())
        self._out.write(self.frames[self.sent % len(self.frames)])
        self.sent += 1

    def _received(self) -> None:
        self.results.append(time.monotonic() - self.outstanding.popleft())
        self.on_receive(self)
