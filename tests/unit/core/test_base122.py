"""Tests for actrix.core.base122 against the base122-rs 0.1.4 vectors."""

from __future__ import annotations

# Twisted's trial assertion methods carry no annotations, so under --strict every
# self.assert*() call is an untyped call.
import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.base122 import Base122Error, decode, encode

# turn-auth.md §3: (input hex, encoded UTF-8 hex, character count).
VECTORS = [
    ("", "", 0),
    ("42", "21de80", 2),
    ("00", "c280", 1),
    ("0a", "05de80", 2),
    ("48656c6c6f", "24192d46633c", 6),
    (
        "000102030405060708090a0b0c0d0e0f",
        "c28020201810c68603420110502c18ca870360",
        16,
    ),
    ("ffffffffffffffffff", "7f7f7f7f7f7f7f7f7f7f60", 11),
    ("0000000100000002deadbeef", "c280c28008c280c28137555b773c", 10),
]


class VectorTests(SynchronousTestCase):
    """The published vectors, both directions."""

    def test_encode_vectors(self) -> None:
        """encode reproduces every vector's UTF-8 bytes and character count."""
        for raw, encoded, chars in VECTORS:
            with self.subTest(raw=raw):
                text = encode(bytes.fromhex(raw))
                self.assertEqual(text.encode("utf-8").hex(), encoded)
                self.assertEqual(len(text), chars)

    def test_decode_vectors(self) -> None:
        """decode turns every vector's text back into its input bytes."""
        for raw, encoded, _ in VECTORS:
            with self.subTest(raw=raw):
                text = bytes.fromhex(encoded).decode("utf-8")
                self.assertEqual(decode(text), bytes.fromhex(raw))

    def test_every_single_byte(self) -> None:
        """Every one-byte input round-trips, including the six illegal groups."""
        for value in range(256):
            with self.subTest(value=value):
                self.assertEqual(decode(encode(bytes([value]))), bytes([value]))

    def test_all_lengths_round_trip(self) -> None:
        """Inputs of every length up to 64 round-trip (all padding cases)."""
        for size in range(65):
            data = bytes((i * 37 + 11) % 256 for i in range(size))
            with self.subTest(size=size):
                self.assertEqual(decode(encode(data)), data)

    def test_output_alphabet(self) -> None:
        """Encoded text never holds a raw illegal character or a code point >= 0x800."""
        text = encode(bytes(range(256)) * 3)
        self.assertFalse(set(text) & set('\x00\n\r"&\\'))
        self.assertLess(max(map(ord, text)), 0x800)


class RejectionTests(SynchronousTestCase):
    """decode rejects everything the encoder cannot produce."""

    def test_index_six(self) -> None:
        """A two-byte character with index bits 6 (U+0600-U+06FF) is rejected."""
        for code in (0x0600, 0x0680, 0x06FF):
            for text in (chr(code), "AB" + chr(code), chr(code) + "AB"):
                with self.subTest(text=text):
                    self.assertRaises(Base122Error, decode, text)

    def test_above_two_bytes(self) -> None:
        """Code points above U+07FF are rejected."""
        for text in ("\u0800\u0800", "A\uffff", "\U0001f600A", "A\ud800"):
            with self.subTest(text=text):
                self.assertRaises(Base122Error, decode, text)

    def test_raw_illegal_ascii(self) -> None:
        """A raw NUL, LF, CR, quote, ampersand or backslash is rejected."""
        for char in '\x00\n\r"&\\':
            with self.subTest(char=char):
                self.assertRaises(Base122Error, decode, "A" + char)

    def test_bit_seven_clear(self) -> None:
        """A two-byte character whose bit 7 is clear is rejected."""
        self.assertRaises(Base122Error, decode, "A\u0100")
        self.assertRaises(Base122Error, decode, "A\u017f")

    def test_shortened_not_last(self) -> None:
        """A shortened (index 7) character must be the last one."""
        self.assertEqual(decode("!\u0780"), b"B")
        self.assertRaises(Base122Error, decode, "!\u0780A")
        self.assertRaises(Base122Error, decode, "!\u0780\u0780")

    def test_shortened_legal_group(self) -> None:
        """A shortened character must carry one of the six illegal groups."""
        self.assertRaises(Base122Error, decode, "!\u07c1")

    def test_impossible_length(self) -> None:
        """A group count of 1 mod 8 matches no input length."""
        self.assertRaises(Base122Error, decode, "A")
        self.assertRaises(Base122Error, decode, "\u0780")
        self.assertRaises(Base122Error, decode, "AAAAAAAAA")

    def test_nonzero_padding(self) -> None:
        """Padding bits after the last byte must be zero."""
        self.assertEqual(decode("!@"), b"C")
        self.assertRaises(Base122Error, decode, "!A")

    def test_error_is_value_error(self) -> None:
        """Base122Error is a ValueError."""
        self.assertTrue(issubclass(Base122Error, ValueError))


class PropertyTests(SynchronousTestCase):
    """Hypothesis properties."""

    @given(st.binary(max_size=600))
    def test_round_trip(self, data: bytes) -> None:
        """decode(encode(b)) == b for any bytes."""
        self.assertEqual(decode(encode(data)), data)

    @given(st.text(alphabet=st.characters(max_codepoint=0x900), max_size=40))
    def test_decode_raises_only_base122_error(self, text: str) -> None:
        """decode of arbitrary text returns bytes or raises Base122Error only."""
        try:
            result = decode(text)
        except Base122Error:
            return
        self.assertEqual(encode(result), text)

    @given(st.text(max_size=40))
    def test_decode_any_unicode(self, text: str) -> None:
        """decode of text over the whole Unicode range raises only Base122Error."""
        with contextlib.suppress(Base122Error):
            decode(text)
