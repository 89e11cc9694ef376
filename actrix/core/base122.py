"""base122 text encoding of bytes, as produced by base122-rs 0.1.4 (kevinAlbs variant).

The actr client puts ``realm_id ‖ key_id ‖ token`` into the TURN USERNAME in this
form (turn-auth.md §3). The input is read MSB first as 7-bit groups (the last one
zero-padded). A group equal to one of six "illegal" values becomes a two-byte
UTF-8 character carrying the illegal value's index and the *next* group (or, for
a trailing illegal group, index 7 and the group itself); every other group is a
single ASCII character.

``decode`` runs for every unauthenticated TURN request, so it is strict and
works on whole strings and integers instead of per-bit Python loops: it accepts
exactly the strings ``encode`` can produce and raises ``Base122Error`` otherwise.
"""

from __future__ import annotations

import functools
import re

__all__ = ["Base122Error", "decode", "encode"]

_ILLEGALS = (0x00, 0x0A, 0x0D, 0x22, 0x26, 0x5C)
_SHORTENED = 0b111

# Decode-table markers: group values are 0x00-0x7F, so any character >= 0x80
# left in the translated text is an error, except one trailing shortened marker.
_INVALID = "\uffff"
_SHORT_BASE = 0x100


def _build_decode_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x80):
        table[code] = _INVALID if code in _ILLEGALS else chr(code)
    for code in range(0x80, 0x800):
        index = (code >> 8) & 0b111
        group = code & 0x7F
        if not code & 0x80 or index == 6:
            # Bit 7 is always set by the encoder; index 6 does not exist (the
            # original decoder reads past its table there).
            table[code] = _INVALID
        elif index == _SHORTENED:
            # The encoder only shortens a trailing *illegal* group.
            table[code] = chr(_SHORT_BASE + group) if group in _ILLEGALS else _INVALID
        else:
            table[code] = chr(_ILLEGALS[index]) + chr(group)
    return table


_DECODE_TABLE = _build_decode_table()

# An illegal group, plus the group after it when there is one.
_ILLEGAL_RE = re.compile(rb'([\x00\n\r"&\\])(.?)', re.DOTALL)


class Base122Error(ValueError):
    """The text is not a base122 encoding produced by ``encode``."""


@functools.lru_cache(maxsize=16)
def _masks(lanes: int) -> tuple[int, int, int, int, int, int]:
    """Bit masks over ``lanes`` 64-bit lanes for the 7-bit/8-bit repacking."""

    def rep(pattern: str) -> int:
        chunk = bytes.fromhex(pattern)
        return int.from_bytes(chunk * (lanes * 8 // len(chunk)), "big")

    return (
        rep("007f"),
        rep("00003fff"),
        rep("000000000fffffff"),
        rep("3f80"),
        rep("0fffc000"),
        rep("00fffffff0000000"),
    )


def _groups_to_bytes(groups: bytes) -> bytes:
    """Concatenate 7-bit groups MSB first; every 8 groups become 7 bytes."""
    lanes = len(groups) // 8
    m14, m28, m56, _, _, _ = _masks(lanes)
    x = int.from_bytes(groups, "big")
    # Squeeze out the unused top bit of each group: 8-bit -> 16 -> 32 -> 64-bit
    # lanes holding 7 -> 14 -> 28 -> 56 significant bits.
    x = (x & m14) | ((x >> 1) & (m14 << 7))
    x = (x & m28) | ((x >> 2) & (m28 << 14))
    x = (x & m56) | ((x >> 4) & (m56 << 28))
    out = bytearray(x.to_bytes(lanes * 8, "big"))
    del out[::8]  # the always-zero top byte of every 64-bit lane
    return bytes(out)


def _bytes_to_groups(data: bytes) -> bytes:
    """Split bytes (a multiple of 7 long) into 7-bit groups, one per byte."""
    lanes = len(data) // 7
    spread = bytearray(lanes * 8)
    for offset in range(7):
        spread[offset + 1 :: 8] = data[offset::7]
    _, _, _, h14, h28, h56 = _masks(lanes)
    x = int.from_bytes(spread, "big")
    x = (x & ~h56) | ((x & h56) << 4)
    x = (x & ~h28) | ((x & h28) << 2)
    x = (x & ~h14) | ((x & h14) << 1)
    return x.to_bytes(lanes * 8, "big")


def _two_byte_char(match: re.Match[bytes]) -> bytes:
    group, following = match.group(1), match.group(2)
    if following:
        index, payload = _ILLEGALS.index(group[0]), following[0]
    else:
        index, payload = _SHORTENED, group[0]
    code = (index << 8) | 0x80 | payload
    return bytes((0xC0 | (code >> 6), 0x80 | (code & 0x3F)))


def encode(data: bytes) -> str:
    """Encode bytes as base122 text (code points U+0000-U+07FF)."""
    if not data:
        return ""
    group_count = -(-len(data) * 8 // 7)
    padded = data + bytes(-len(data) % 7)
    groups = _bytes_to_groups(padded)[:group_count]
    return _ILLEGAL_RE.sub(_two_byte_char, groups).decode("utf-8")


def decode(text: str) -> bytes:
    """Decode base122 text back to bytes.

    Raises:
        Base122Error: if ``text`` is not exactly what ``encode`` produces for
            some input: a raw illegal ASCII character, a two-byte character
            with index 6 or bit 7 clear, a shortened character that is not
            last or does not carry an illegal group, a code point above
            U+07FF, a group count no input yields, or non-zero padding bits.
    """
    if not text:
        return b""
    translated = text.translate(_DECODE_TABLE)
    if translated.isascii():
        groups = translated.encode("ascii")
    else:
        last = ord(translated[-1]) - _SHORT_BASE
        body = translated[:-1]
        if not (0 <= last < 0x80 and body.isascii()):
            raise Base122Error("not a base122 string")
        groups = body.encode("ascii") + bytes((last,))
    count = len(groups)
    if count % 8 == 1:
        # ceil(8n/7) is never 1 mod 8.
        raise Base122Error("base122 length matches no input length")
    size = count * 7 // 8
    raw = _groups_to_bytes(groups + bytes(-count % 8))
    if any(raw[size:]):
        raise Base122Error("non-zero base122 padding bits")
    return raw[:size]
