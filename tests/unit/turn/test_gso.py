"""UDP GSO batches (actrix.turn.gso) on loopback sockets, and their fallbacks."""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from actrix.turn.gso import MAX_SEGMENTS, BatchSender


def _pair(test: SynchronousTestCase) -> tuple[socket.socket, socket.socket]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    test.addCleanup(sender.close)
    test.addCleanup(receiver.close)
    return sender, receiver


def _receive(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(65536) for _ in range(count)]


class _FailingSocket:
    """sendmsg fails with ``code``; sendto records what goes out."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.sent: list[bytes] = []
        self.sendmsg_calls = 0

    def sendto(self, data: bytes, address: Any) -> int:
        self.sent.append(data)
        return len(data)

    def sendmsg(self, *args: Any) -> int:
        self.sendmsg_calls += 1
        raise OSError(self.code, "refused")


class BatchSenderTests(SynchronousTestCase):
    def test_runs_arrive_as_separate_datagrams_in_order(self) -> None:
        """Equal-sized frames, a shorter last one, then larger ones: all arrive."""
        sender, receiver = _pair(self)
        frames = [bytes([i]) * 104 for i in range(6)] + [b"short"]
        frames += [bytes([0x50 + i]) * 300 for i in range(3)] + [b"x"]
        batch = BatchSender(sender)
        batch.send(frames, receiver.getsockname())
        self.assertEqual(_receive(receiver, len(frames)), frames)
        self.assertEqual(batch.runs, 2)  # 6 + short, then 3 + "x"

    def test_run_length_and_size_bounds(self) -> None:
        """More than MAX_SEGMENTS, or over one datagram's bytes, is cut."""
        sender, receiver = _pair(self)
        frames = [i.to_bytes(2, "big") * 50 for i in range(MAX_SEGMENTS + 6)]
        batch = BatchSender(sender)
        batch.send(frames, receiver.getsockname())
        self.assertEqual(_receive(receiver, len(frames)), frames)
        self.assertEqual(batch.runs, 2)
        big = [bytes([i]) * 1400 for i in range(60)]  # 84 000 bytes
        batch.send(big, receiver.getsockname())
        self.assertEqual(_receive(receiver, len(big)), big)
        self.assertEqual(batch.runs, 4)

    def test_large_frames_go_one_by_one(self) -> None:
        """Segments above the MTU-safe size are not offloaded."""
        sender, receiver = _pair(self)
        frames = [bytes([i]) * 2000 for i in range(3)]
        batch = BatchSender(sender)
        batch.send(frames, receiver.getsockname())
        self.assertEqual(_receive(receiver, 3), frames)
        self.assertEqual(batch.runs, 0)

    def test_no_gso_in_the_kernel_turns_it_off(self) -> None:
        """ENOPROTOOPT: this run one by one, and no sendmsg is tried again."""
        sock = _FailingSocket(errno.ENOPROTOOPT)
        batch = BatchSender(sock)
        frames = [b"a" * 10, b"b" * 10]
        batch.send(frames, ("127.0.0.1", 9))
        batch.send(frames, ("127.0.0.1", 9))
        self.assertEqual(sock.sent, frames * 2)
        self.assertEqual(sock.sendmsg_calls, 1)
        self.assertFalse(batch.enabled)

    def test_segment_over_the_path_mtu_is_learned(self) -> None:
        """EINVAL: one by one, and that size is not offloaded again."""
        sock = _FailingSocket(errno.EINVAL)
        batch = BatchSender(sock)
        frames = [b"a" * 1000, b"b" * 1000]
        batch.send(frames, ("127.0.0.1", 9))
        batch.send(frames, ("127.0.0.1", 9))
        self.assertEqual(sock.sent, frames * 2)
        self.assertEqual(sock.sendmsg_calls, 1)
        self.assertEqual(batch.max_segment, 999)
        self.assertTrue(batch.enabled)

    def test_full_buffer_drops_the_run(self) -> None:
        """EAGAIN drops the run, as separate sends into a full buffer would."""
        sock = _FailingSocket(errno.EAGAIN)
        batch = BatchSender(sock)
        batch.send([b"a" * 10, b"b" * 10], ("127.0.0.1", 9))
        self.assertEqual(sock.sent, [])
        self.assertTrue(batch.enabled)
