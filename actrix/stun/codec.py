"""STUN (RFC 5389/8489) and TURN (RFC 5766/6156) wire format: messages and ChannelData.

:func:`decode` turns one datagram (or one TCP frame) into a :class:`Message`
whose attributes stay as raw value bytes in a dict (first occurrence wins, as
RFC 5389 §15 asks); the typed accessors below parse a value on demand. Every
parsing problem raises :class:`DecodeError` and nothing else. :func:`encode`
builds a message from already-encoded attribute values, adding
MESSAGE-INTEGRITY (HMAC-SHA1) or MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6)
and FINGERPRINT when asked. Long-term keys come from MD5 or SHA-256 (RFC 8489
§18.5, PASSWORD-ALGORITHM); USERHASH is RFC 8489 §14.4.
Hot paths use precompiled :class:`struct.Struct` objects only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import struct
import zlib
from collections.abc import Iterable
from typing import Final

MAGIC_COOKIE: Final = 0x2112A442
MAGIC_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_SIZE: Final = 20
FINGERPRINT_XOR: Final = 0x5354554E

# Classes (the C1/C0 bits, already spread into a message type).
CLASS_REQUEST: Final = 0x0000
CLASS_INDICATION: Final = 0x0010
CLASS_SUCCESS: Final = 0x0100
CLASS_ERROR: Final = 0x0110
CLASS_MASK: Final = 0x0110

# Methods.
METHOD_BINDING: Final = 0x001
METHOD_ALLOCATE: Final = 0x003
METHOD_REFRESH: Final = 0x004
METHOD_SEND: Final = 0x006
METHOD_DATA: Final = 0x007
METHOD_CREATE_PERMISSION: Final = 0x008
METHOD_CHANNEL_BIND: Final = 0x009
METHOD_CONNECT: Final = 0x00A  # RFC 6062
METHOD_CONNECTION_BIND: Final = 0x00B
METHOD_CONNECTION_ATTEMPT: Final = 0x00C

# Message types used on the hot paths.
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
BINDING_ERROR: Final = 0x0111
SEND_INDICATION: Final = 0x0016
DATA_INDICATION: Final = 0x0017

# Attributes.
MAPPED_ADDRESS: Final = 0x0001
CHANGE_REQUEST: Final = 0x0003
USERNAME: Final = 0x0006
MESSAGE_INTEGRITY: Final = 0x0008
ERROR_CODE: Final = 0x0009
UNKNOWN_ATTRIBUTES: Final = 0x000A
CHANNEL_NUMBER: Final = 0x000C
LIFETIME: Final = 0x000D
XOR_PEER_ADDRESS: Final = 0x0012
DATA: Final = 0x0013
REALM: Final = 0x0014
NONCE: Final = 0x0015
XOR_RELAYED_ADDRESS: Final = 0x0016
REQUESTED_ADDRESS_FAMILY: Final = 0x0017
EVEN_PORT: Final = 0x0018
REQUESTED_TRANSPORT: Final = 0x0019
DONT_FRAGMENT: Final = 0x001A
MESSAGE_INTEGRITY_SHA256: Final = 0x001C
PASSWORD_ALGORITHM: Final = 0x001D
USERHASH: Final = 0x001E
XOR_MAPPED_ADDRESS: Final = 0x0020
RESERVATION_TOKEN: Final = 0x0022
CONNECTION_ID: Final = 0x002A
ADDITIONAL_ADDRESS_FAMILY: Final = 0x8000
ADDRESS_ERROR_CODE: Final = 0x8001
PASSWORD_ALGORITHMS: Final = 0x8002
ALTERNATE_DOMAIN: Final = 0x8003
SOFTWARE: Final = 0x8022
ALTERNATE_SERVER: Final = 0x8023
FINGERPRINT: Final = 0x8028

# PASSWORD-ALGORITHM numbers (RFC 8489 §18.5).
ALGORITHM_MD5: Final = 0x0001
ALGORITHM_SHA256: Final = 0x0002

# Comprehension-required attributes this codec knows (RFC 5389 §15, 5766 §14,
# 6156, 8489). Unknown ones in 0x0000-0x7FFF make a request fail with 420.
KNOWN_REQUIRED: Final = frozenset(
    {
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        CHANNEL_NUMBER,
        LIFETIME,
        XOR_PEER_ADDRESS,
        DATA,
        REALM,
        NONCE,
        XOR_RELAYED_ADDRESS,
        REQUESTED_ADDRESS_FAMILY,
        EVEN_PORT,
        REQUESTED_TRANSPORT,
        DONT_FRAGMENT,
        XOR_MAPPED_ADDRESS,
        RESERVATION_TOKEN,
        MESSAGE_INTEGRITY_SHA256,
        PASSWORD_ALGORITHM,
        USERHASH,
        CONNECTION_ID,
    }
)

FAMILY_IPV4: Final = 0x01
FAMILY_IPV6: Final = 0x02
TRANSPORT_UDP: Final = 17
TRANSPORT_TCP: Final = 6

CHANNEL_MIN: Final = 0x4000
# RFC 5766 §11 allows 0x4000-0x7FFF; RFC 8656 later narrowed it to 0x4FFF, but
# coturn (server and turnutils_uclient) still uses the whole RFC 5766 range.
CHANNEL_MAX: Final = 0x7FFF

REASONS: Final = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}

_HEADER = struct.Struct("!HHI12s")
_HEADER_PREFIX = struct.Struct("!HH")
_ATTR_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_ADDR4 = struct.Struct("!xBH4s")
_ADDR6 = struct.Struct("!xBH16s")
_MI_ATTR_HEADER: Final = _ATTR_HEADER.pack(MESSAGE_INTEGRITY, 20)
_MI256_ATTR_HEADER: Final = _ATTR_HEADER.pack(MESSAGE_INTEGRITY_SHA256, 32)
_FP_ATTR_HEADER: Final = _ATTR_HEADER.pack(FINGERPRINT, 4)
_PADDING: Final = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_COOKIE_HIGH: Final = MAGIC_COOKIE >> 16
_COOKIE4: Final = MAGIC_BYTES


_NO_PEERS: Final[list[bytes]] = []

# Parse-cost bounds (defect 8). A 64 KB datagram can hold 16 000 empty
# attributes; every real message has a handful (CreatePermission may repeat
# XOR-PEER-ADDRESS), so decoding stops at MAX_ATTRIBUTES. Requests have no
# payload, so the transports drop larger ones unread (RFC 8489 §6.1 lets a
# server drop what it will not process); Send indications carry data and are
# bounded by the datagram/frame size and the attribute count only.
MAX_ATTRIBUTES: Final = 64
MAX_REQUEST_UDP: Final = 2048
MAX_REQUEST_STREAM: Final = 4096


class DecodeError(ValueError):
    """The bytes are not a well-formed STUN message, attribute or ChannelData."""


class Message:
    """A decoded STUN message.

    ``attrs`` maps attribute type to raw value (first occurrence); attributes
    after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
    FINGERPRINT are ignored, and after MESSAGE-INTEGRITY-SHA256 all but
    FINGERPRINT (RFC 8489 §14.5, §14.6). ``integrity_offset`` and
    ``integrity256_offset`` are where those two start (or -1) so the key can
    be checked later against ``raw``. ``extra_peers`` holds the values of
    repeated XOR-PEER-ADDRESS attributes (never mutate it).
    """

    __slots__ = (
        "attrs",
        "extra_peers",
        "fingerprint",
        "integrity256_offset",
        "integrity_offset",
        "msg_type",
        "raw",
        "transaction_id",
        "unknown",
    )

    def __init__(
        self,
        msg_type: int,
        transaction_id: bytes,
        attrs: dict[int, bytes],
        unknown: list[int],
        integrity_offset: int,
        fingerprint: bool,
        raw: bytes,
        integrity256_offset: int = -1,
    ) -> None:
        self.msg_type = msg_type
        self.transaction_id = transaction_id
        self.attrs = attrs
        self.unknown = unknown
        self.integrity_offset = integrity_offset
        self.integrity256_offset = integrity256_offset
        self.fingerprint = fingerprint
        self.raw = raw
        self.extra_peers: list[bytes] = _NO_PEERS

    @property
    def method(self) -> int:
        """The 12-bit method with the class bits removed."""
        t = self.msg_type
        return (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)

    @property
    def msg_class(self) -> int:
        """One of the ``CLASS_*`` values."""
        return self.msg_type & CLASS_MASK

    def __repr__(self) -> str:
        return (
            f"Message(type=0x{self.msg_type:04x}, "
            f"attrs={sorted(f'0x{a:04x}' for a in self.attrs)})"
        )


def message_type(method: int, msg_class: int) -> int:
    """Spread a 12-bit method around the class bits (RFC 5389 §6)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | (msg_class)
    )


def is_request(data: bytes) -> bool:
    """Whether a STUN datagram's class bits say request (cheap, before decoding)."""
    return len(data) > 1 and not data[0] & 0x01 and not data[1] & 0x10


def is_stun(data: bytes) -> bool:
    """Cheap check: top bits 00 and the magic cookie in place."""
    return len(data) >= HEADER_SIZE and data[0] < 0x40 and data[4:8] == _COOKIE4


def decode(data: bytes, max_attributes: int = MAX_ATTRIBUTES) -> Message:
    """Parse one whole STUN message of at most ``max_attributes`` attributes.

    Raises:
        DecodeError: wrong size, top bits, magic cookie, length, attribute
            layout, too many attributes, or a FINGERPRINT that does not match.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise DecodeError("shorter than a STUN header")
    msg_type, length, cookie, txid = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise DecodeError("top bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise DecodeError("wrong magic cookie")
    if length & 3 or length + HEADER_SIZE != size:
        raise DecodeError("length does not match the datagram")
    attrs: dict[int, bytes] = {}
    unknown: list[int] = []
    extra_peers: list[bytes] = []
    integrity_offset = -1
    integrity256_offset = -1
    fingerprint = False
    offset = HEADER_SIZE
    unpack_attr = _ATTR_HEADER.unpack_from
    budget = max_attributes
    while offset < size:
        if not budget:
            raise DecodeError("too many attributes")
        budget -= 1
        if offset + 4 > size:
            raise DecodeError("truncated attribute header")
        attr_type, attr_len = unpack_attr(data, offset)
        start = offset + 4
        end = start + attr_len
        if end > size:
            raise DecodeError("attribute runs past the message")
        if attr_type == FINGERPRINT:
            if attr_len != 4:
                raise DecodeError("FINGERPRINT is not 4 bytes")
            _check_fingerprint(data, offset)
            fingerprint = True
        elif integrity256_offset >= 0:
            pass  # RFC 8489 §14.6: only FINGERPRINT may follow
        elif attr_type == MESSAGE_INTEGRITY_SHA256:
            # RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4.
            if not 16 <= attr_len <= 32 or attr_len & 3:
                raise DecodeError("MESSAGE-INTEGRITY-SHA256 has a bad length")
            integrity256_offset = offset
        elif integrity_offset >= 0:
            pass  # RFC 8489 §14.5: ignore the rest after MESSAGE-INTEGRITY
        else:
            if attr_type == MESSAGE_INTEGRITY:
                if attr_len != 20:
                    raise DecodeError("MESSAGE-INTEGRITY is not 20 bytes")
                integrity_offset = offset
            if attr_type not in attrs:
                attrs[attr_type] = data[start:end]
                if attr_type < 0x8000 and attr_type not in KNOWN_REQUIRED:
                    unknown.append(attr_type)
            elif attr_type == XOR_PEER_ADDRESS:
                # CreatePermission may name several peers (RFC 5766 §9.1).
                extra_peers.append(data[start:end])
        offset = end + (-attr_len & 3)
    if offset != size:
        raise DecodeError("attribute padding runs past the message")
    message = Message(
        msg_type,
        txid,
        attrs,
        unknown,
        integrity_offset,
        fingerprint,
        data,
        integrity256_offset,
    )
    if extra_peers:
        message.extra_peers = extra_peers
    return message


def _check_fingerprint(data: bytes, offset: int) -> None:
    if offset + 8 != len(data):
        raise DecodeError("FINGERPRINT is not the last attribute")
    expected = _U32.unpack_from(data, offset + 4)[0]
    if fingerprint_value(data[:offset], len(data) - HEADER_SIZE) != expected:
        raise DecodeError("FINGERPRINT does not match")


def fingerprint_value(prefix: bytes, length: int) -> int:
    """CRC-32 of ``prefix`` with the header length set to ``length``, XOR 0x5354554E."""
    crc = zlib.crc32(prefix[:2])
    crc = zlib.crc32(_U16.pack(length), crc)
    crc = zlib.crc32(prefix[4:], crc)
    return crc ^ FINGERPRINT_XOR


def check_integrity(message: Message, key: bytes) -> bool:
    """Whether MESSAGE-INTEGRITY verifies with ``key`` (False when absent)."""
    offset = message.integrity_offset
    if offset < 0:
        return False
    raw = message.raw
    adjusted = _U16.pack(offset + 24 - HEADER_SIZE)
    # hmac.digest is OpenSSL's one-shot HMAC: cheaper than hmac.new + update.
    mac = hmac.digest(key, raw[:2] + adjusted + raw[4:offset], "sha1")
    return hmac.compare_digest(mac, raw[offset + 4 : offset + 24])


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 5389 §15.4 long-term key: MD5(username ":" realm ":" password)."""
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text, usedforsecurity=False).digest()


def encode(
    msg_type: int,
    transaction_id: bytes,
    attributes: Iterable[tuple[int, bytes]],
    *,
    key: bytes | None = None,
    fingerprint: bool = False,
    sha256: bool = False,
) -> bytes:
    """Serialise a message; MESSAGE-INTEGRITY with ``key`` and FINGERPRINT appended.

    With ``sha256`` the integrity attribute is MESSAGE-INTEGRITY-SHA256 (the
    whole 32-byte HMAC) instead. Attribute values are given already encoded;
    padding is added here.
    """
    parts = []
    pack_attr = _ATTR_HEADER.pack
    for attr_type, value in attributes:
        n = len(value)
        parts.append(pack_attr(attr_type, n))
        parts.append(value)
        if n & 3:
            parts.append(_PADDING[n & 3])
    body = b"".join(parts)
    if key is not None and sha256:
        length = len(body) + 36
        head = _HEADER.pack(msg_type, length, MAGIC_COOKIE, transaction_id)
        body = body + _MI256_ATTR_HEADER + hmac.digest(key, head + body, "sha256")
    elif key is not None:
        length = len(body) + 24
        head = _HEADER.pack(msg_type, length, MAGIC_COOKIE, transaction_id)
        body = body + _MI_ATTR_HEADER + hmac.digest(key, head + body, "sha1")
    if fingerprint:
        length = len(body) + 8
        head = _HEADER.pack(msg_type, length, MAGIC_COOKIE, transaction_id)
        crc = zlib.crc32(body, zlib.crc32(head)) ^ FINGERPRINT_XOR
        return head + body + _FP_ATTR_HEADER + _U32.pack(crc)
    return _HEADER.pack(msg_type, len(body), MAGIC_COOKIE, transaction_id) + body


# ---------------------------------------------------------------------------
# Attribute values


def encode_xor_address(ip: str, port: int, transaction_id: bytes) -> bytes:
    """XOR-MAPPED/RELAYED/PEER-ADDRESS value for ``ip:port``."""
    packed = _pack_ip(ip)
    xport = port ^ _COOKIE_HIGH
    if len(packed) == 4:
        xaddr = (int.from_bytes(packed, "big") ^ MAGIC_COOKIE).to_bytes(4, "big")
        return _ADDR4.pack(FAMILY_IPV4, xport, xaddr)
    mask = int.from_bytes(MAGIC_BYTES + transaction_id, "big")
    xaddr = (int.from_bytes(packed, "big") ^ mask).to_bytes(16, "big")
    return _ADDR6.pack(FAMILY_IPV6, xport, xaddr)


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """(ip, port) of an XOR-*-ADDRESS value.

    Raises:
        DecodeError: wrong length or unknown family.
    """
    ip_bytes, port = _split_address(value)
    port ^= _COOKIE_HIGH
    if len(ip_bytes) == 4:
        raw = (int.from_bytes(ip_bytes, "big") ^ MAGIC_COOKIE).to_bytes(4, "big")
    else:
        mask = int.from_bytes(MAGIC_BYTES + transaction_id, "big")
        raw = (int.from_bytes(ip_bytes, "big") ^ mask).to_bytes(16, "big")
    return _unpack_ip(raw), port


def encode_address(ip: str, port: int) -> bytes:
    """MAPPED-ADDRESS value (no XOR) for ``ip:port``."""
    packed = _pack_ip(ip)
    if len(packed) == 4:
        return _ADDR4.pack(FAMILY_IPV4, port, packed)
    return _ADDR6.pack(FAMILY_IPV6, port, packed)


def decode_address(value: bytes) -> tuple[str, int]:
    """(ip, port) of a MAPPED-ADDRESS value. Raises DecodeError."""
    ip_bytes, port = _split_address(value)
    return _unpack_ip(ip_bytes), port


def _split_address(value: bytes) -> tuple[bytes, int]:
    if len(value) == 8:
        family, port, ip_bytes = _ADDR4.unpack(value)
        if family == FAMILY_IPV4:
            return ip_bytes, port
    elif len(value) == 20:
        family, port, ip_bytes = _ADDR6.unpack(value)
        if family == FAMILY_IPV6:
            return ip_bytes, port
    raise DecodeError("malformed address attribute")


def _pack_ip(ip: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except OSError as e:
        raise ValueError(f"not an IP address: {ip!r}") from e


def _unpack_ip(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return str(ipaddress.IPv6Address(raw))


def encode_error_code(code: int, reason: str | None = None) -> bytes:
    """ERROR-CODE value (class/number and UTF-8 reason phrase)."""
    text = REASONS.get(code, "Error") if reason is None else reason
    return struct.pack("!HBB", 0, code // 100, code % 100) + text.encode()


def encode_address_error_code(family: int, code: int) -> bytes:
    """ADDRESS-ERROR-CODE value (RFC 8656 §18.13): family, then as ERROR-CODE."""
    reason = REASONS.get(code, "Error").encode()
    return bytes((family, 0, code // 100, code % 100)) + reason


def decode_address_error_code(value: bytes) -> tuple[int, int]:
    """(family, code) of an ADDRESS-ERROR-CODE value. Raises DecodeError."""
    if len(value) < 4:
        raise DecodeError("ADDRESS-ERROR-CODE shorter than 4 bytes")
    code, _ = decode_error_code(b"\x00\x00" + value[2:])
    return value[0], code


def decode_error_code(value: bytes) -> tuple[int, str]:
    """(code, reason) of an ERROR-CODE value. Raises DecodeError."""
    if len(value) < 4:
        raise DecodeError("ERROR-CODE shorter than 4 bytes")
    klass, number = value[2] & 0x07, value[3]
    if not 3 <= klass <= 6 or number > 99:
        raise DecodeError("ERROR-CODE out of range")
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("ERROR-CODE reason is not UTF-8") from e
    return klass * 100 + number, reason


def encode_unknown_attributes(types: Iterable[int]) -> bytes:
    """UNKNOWN-ATTRIBUTES value."""
    return b"".join(_U16.pack(t) for t in types)


def decode_unknown_attributes(value: bytes) -> list[int]:
    """The attribute types listed in UNKNOWN-ATTRIBUTES. Raises DecodeError."""
    if len(value) & 1:
        raise DecodeError("UNKNOWN-ATTRIBUTES has an odd length")
    return [_U16.unpack_from(value, i)[0] for i in range(0, len(value), 2)]


def encode_u32(value: int) -> bytes:
    """A 32-bit value (LIFETIME)."""
    return _U32.pack(value)


def decode_u32(value: bytes) -> int:
    """LIFETIME and similar 32-bit values. Raises DecodeError."""
    if len(value) != 4:
        raise DecodeError("expected a 4-byte value")
    return int(_U32.unpack(value)[0])


def encode_channel_number(channel: int) -> bytes:
    """CHANNEL-NUMBER value (number and RFFU)."""
    return _U16.pack(channel) + b"\x00\x00"


def decode_channel_number(value: bytes) -> int:
    """CHANNEL-NUMBER value. Raises DecodeError."""
    if len(value) != 4:
        raise DecodeError("CHANNEL-NUMBER is not 4 bytes")
    return int(_U16.unpack_from(value)[0])


def encode_requested_transport(protocol: int = TRANSPORT_UDP) -> bytes:
    """REQUESTED-TRANSPORT value."""
    return bytes((protocol, 0, 0, 0))


def decode_requested_transport(value: bytes) -> int:
    """The IP protocol number in REQUESTED-TRANSPORT. Raises DecodeError."""
    if len(value) != 4:
        raise DecodeError("REQUESTED-TRANSPORT is not 4 bytes")
    return value[0]


def encode_address_family(family: int) -> bytes:
    """REQUESTED-ADDRESS-FAMILY value (RFC 6156)."""
    return bytes((family, 0, 0, 0))


def decode_address_family(value: bytes) -> int:
    """REQUESTED-ADDRESS-FAMILY value. Raises DecodeError."""
    if len(value) != 4:
        raise DecodeError("REQUESTED-ADDRESS-FAMILY is not 4 bytes")
    return value[0]


def encode_even_port(reserve: bool) -> bytes:
    """EVEN-PORT value (R bit)."""
    return b"\x80" if reserve else b"\x00"


def decode_even_port(value: bytes) -> bool:
    """The R bit of EVEN-PORT. Raises DecodeError."""
    if len(value) != 1:
        raise DecodeError("EVEN-PORT is not 1 byte")
    return bool(value[0] & 0x80)


def decode_text(value: bytes, limit: int = 763) -> str:
    """USERNAME/REALM/NONCE/SOFTWARE text. Raises DecodeError."""
    if len(value) > limit:
        raise DecodeError("text attribute too long")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("text attribute is not UTF-8") from e


# ---------------------------------------------------------------------------
# ChannelData (RFC 5766 §11.4)

_CHANNEL_HEADER = struct.Struct("!HH")


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """A ChannelData message; ``pad`` rounds it up to 4 bytes (TCP, §11.5)."""
    frame = _CHANNEL_HEADER.pack(channel, len(data)) + data
    if pad and len(data) & 3:
        frame += _PADDING[len(data) & 3]
    return frame


def decode_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel, payload) of one ChannelData message (UDP padding tolerated).

    Raises:
        DecodeError: truncated, or the channel number is outside 0x4000-0x7FFF.
    """
    if len(data) < 4:
        raise DecodeError("ChannelData shorter than 4 bytes")
    channel, length = _CHANNEL_HEADER.unpack_from(data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise DecodeError("not a ChannelData channel number")
    if 4 + length > len(data):
        raise DecodeError("ChannelData shorter than its length")
    return channel, data[4 : 4 + length]


def frame_size(buffer: bytes | bytearray, offset: int = 0) -> int:
    """Size of the STUN message or padded ChannelData starting at ``offset``.

    Returns 0 when fewer than 4 bytes are available.

    Raises:
        DecodeError: the first byte starts neither a STUN message nor a channel.
    """
    if len(buffer) - offset < 4:
        return 0
    first = buffer[offset]
    length = (buffer[offset + 2] << 8) | buffer[offset + 3]
    if first < 0x40:
        return HEADER_SIZE + length
    if first <= 0x7F:
        return 4 + length + (-length & 3)
    raise DecodeError("neither STUN nor ChannelData")
