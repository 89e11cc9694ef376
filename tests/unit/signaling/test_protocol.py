"""Tests for the frame handling helpers of actrix.signaling.protocol."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.signaling.protocol import binary_frame_header, unmask


def parse_header(header: bytes) -> tuple[int, bool, int]:
    """(opcode | FIN bit, masked, payload length) per RFC 6455 §5.2."""
    first, second = header[0], header[1]
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(header[2:4], "big")
        expected_size = 4
    elif length == 127:
        length = int.from_bytes(header[2:10], "big")
        expected_size = 10
    else:
        expected_size = 2
    assert len(header) == expected_size, header
    return first, bool(second & 0x80), length


class FrameHeaderTests(SynchronousTestCase):
    def test_lengths_use_the_shortest_encoding(self) -> None:
        """7-bit, 16-bit and 64-bit lengths are chosen at 125/126 and 65535/65536."""
        for size, header_size in (
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (16 * 1024 * 1024, 10),
        ):
            header = binary_frame_header(size)
            self.assertEqual(len(header), header_size, size)
            self.assertEqual(parse_header(header), (0x82, False, size))


class UnmaskTests(SynchronousTestCase):
    def test_unmask_is_bytewise_xor_with_repeating_key(self) -> None:
        """Every payload byte i is XORed with key byte i mod 4, at any length."""
        mask = b"\x01\x80\xff\x3c"
        for size in (0, 1, 3, 4, 5, 126, 1000):
            payload = bytes((i * 7) % 256 for i in range(size))
            expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.assertEqual(unmask(payload, mask), expected, size)
            self.assertEqual(unmask(expected, mask), payload, size)

    def test_leading_zero_bytes_survive(self) -> None:
        """Payload bytes that unmask to zero at the start are kept."""
        self.assertEqual(unmask(b"\x01\x02\x03", b"\x01\x02\x00\x00"), b"\x00\x00\x03")
