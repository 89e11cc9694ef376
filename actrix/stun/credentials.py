"""RFC 8489 long-term credential pieces: SHA-256 keys, USERHASH, algorithms.

MESSAGE-INTEGRITY-SHA256 is located by :func:`actrix.stun.codec.decode` and
written by :func:`actrix.stun.codec.encode`; this module checks it, derives
the SHA-256 long-term key and the USERHASH, and encodes/decodes the
PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS values. The "nonce cookie" of
RFC 8489 §9.2 (``obMatJos2`` + the security feature set) is built here too.
Every parsing problem raises :class:`~actrix.stun.codec.DecodeError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Iterable
from typing import Final

from actrix.stun.codec import HEADER_SIZE, DecodeError, Message

NONCE_COOKIE: Final = b"obMatJos2"
# Security feature bits (RFC 8489 §18.1). The RFC text numbers bit 0 from
# the most significant end; errata 6268 and libjuice count from the least
# significant end. Both readings are in use (librice/ministun the first,
# libjuice the second), so the set we announce carries each feature at both
# positions: each client then sees the features it knows, and the other
# positions are unassigned bits it ignores.
FEATURE_PASSWORD_ALGORITHMS: Final = 0x800001
FEATURE_USERNAME_ANONYMITY: Final = 0x400002

_U16 = struct.Struct("!H")
_ENTRY = struct.Struct("!HH")


def nonce_cookie(features: int) -> bytes:
    """``obMatJos2`` followed by the 24-bit feature set in base64 (4 characters)."""
    return NONCE_COOKIE + base64.b64encode(features.to_bytes(3, "big"))


def check_integrity_sha256(message: Message, key: bytes) -> bool:
    """Whether MESSAGE-INTEGRITY-SHA256 verifies with ``key`` (False when absent).

    The value may be truncated to 16-28 bytes (RFC 8489 §14.6): the leading
    bytes of the HMAC are compared.
    """
    offset = message.integrity256_offset
    if offset < 0:
        return False
    raw = message.raw
    size = _U16.unpack_from(raw, offset + 2)[0]
    adjusted = _U16.pack(offset + 4 + size - HEADER_SIZE)
    mac = hmac.digest(key, raw[:2] + adjusted + raw[4:offset], "sha256")
    return hmac.compare_digest(mac[:size], raw[offset + 4 : offset + 4 + size])


def long_term_key_sha256(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2 SHA-256 key: SHA-256(username ":" realm ":" password).

    Like :func:`long_term_key`, no OpaqueString/SASLprep mapping is applied:
    the strings are used as given (ASCII credentials are unaffected).
    """
    return hashlib.sha256(f"{username}:{realm}:{password}".encode()).digest()


def userhash(username: str, realm: str) -> bytes:
    """RFC 8489 §14.4 USERHASH value: SHA-256(username ":" realm)."""
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()


def encode_password_algorithm(algorithm: int) -> bytes:
    """PASSWORD-ALGORITHM value: the number and empty parameters (MD5, SHA-256)."""
    return _ENTRY.pack(algorithm, 0)


def encode_password_algorithms(algorithms: Iterable[int]) -> bytes:
    """PASSWORD-ALGORITHMS value: one parameterless entry per algorithm."""
    return b"".join(_ENTRY.pack(a, 0) for a in algorithms)


def decode_password_algorithm(value: bytes) -> int:
    """The algorithm number of PASSWORD-ALGORITHM. Raises DecodeError.

    RFC 8489 §14.11: number (16 bits), parameters length (16 bits), the
    parameters padded to 4 bytes; MD5 and SHA-256 have none.
    """
    if len(value) < 4:
        raise DecodeError("PASSWORD-ALGORITHM shorter than 4 bytes")
    algorithm, params = _ENTRY.unpack_from(value)
    if 4 + params + (-params & 3) != len(value):
        raise DecodeError("PASSWORD-ALGORITHM parameters do not fit")
    return int(algorithm)


def decode_password_algorithms(value: bytes) -> list[int]:
    """The algorithm numbers of PASSWORD-ALGORITHMS, in order. Raises DecodeError."""
    algorithms = []
    offset, size = 0, len(value)
    while offset < size:
        if offset + 4 > size:
            raise DecodeError("truncated PASSWORD-ALGORITHMS entry")
        algorithm, params = _ENTRY.unpack_from(value, offset)
        offset += 4 + params + (-params & 3)
        if offset > size:
            raise DecodeError("PASSWORD-ALGORITHMS parameters run past the value")
        algorithms.append(int(algorithm))
    return algorithms
