"""The binary session protocol's frames (rooms.md §3): bytes ↔ value objects.

A frame is a 21-byte header (0xAA, type, UUID, payload type, big-endian length)
and a JSON or ``google.protobuf.Struct`` payload holding an externally tagged
variant. :func:`decode` checks the header, the direction of the type, the
payload type and every required field; each fault raises :class:`BinaryError`
with the §9 error code and message the client is sent.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

import attrs
from google.protobuf import struct_pb2

from actrix.rooms.json_codec import JsonDecodeError, loads

HEADER: Final = struct.Struct(">BB16sBH")
HEADER_LEN: Final = 21
START: Final = 0xAA
MAX_PAYLOAD: Final = 0xFFFF
MAX_FRAME: Final = HEADER_LEN + MAX_PAYLOAD

CONNECT, CONNECT_ACK, DISCONNECT = 0x01, 0x02, 0x03
HEARTBEAT, HEARTBEAT_ACK = 0x04, 0x05
SIGNAL_OFFER, SIGNAL_ANSWER, SIGNAL_ICE_CANDIDATE = 0x10, 0x11, 0x12
REGISTER, REGISTER_ACK, UNREGISTER, UNREGISTER_ACK = 0x20, 0x21, 0x22, 0x23
ROOM_CREATE, ROOM_CREATE_ACK = 0x30, 0x31
ROOM_JOIN, ROOM_JOIN_ACK = 0x32, 0x33
ROOM_LEAVE, ROOM_LEAVE_ACK = 0x34, 0x35
TIME_SYNC, TIME_SYNC_ACK, ROOM_EVENT = 0x40, 0x41, 0x42
ERROR: Final = 0xFF

PAYLOAD_BINARY, PAYLOAD_JSON, PAYLOAD_TEXT, PAYLOAD_PROTOBUF, PAYLOAD_CBOR = (
    1,
    2,
    3,
    4,
    5,
)
SERVED_PAYLOADS: Final = (PAYLOAD_JSON, PAYLOAD_PROTOBUF)

VARIANTS: Final = {
    CONNECT: "Connect",
    CONNECT_ACK: "ConnectAck",
    DISCONNECT: "Disconnect",
    HEARTBEAT: "Heartbeat",
    HEARTBEAT_ACK: "HeartbeatAck",
    SIGNAL_OFFER: "SignalOffer",
    SIGNAL_ANSWER: "SignalAnswer",
    SIGNAL_ICE_CANDIDATE: "SignalIceCandidate",
    REGISTER: "Register",
    REGISTER_ACK: "RegisterAck",
    UNREGISTER: "Unregister",
    UNREGISTER_ACK: "UnregisterAck",
    ROOM_CREATE: "WebRTCRoomCreate",
    ROOM_CREATE_ACK: "WebRTCRoomCreateAck",
    ROOM_JOIN: "WebRTCRoomJoin",
    ROOM_JOIN_ACK: "WebRTCRoomJoinAck",
    ROOM_LEAVE: "WebRTCRoomLeave",
    ROOM_LEAVE_ACK: "WebRTCRoomLeaveAck",
    TIME_SYNC: "TimeSync",
    TIME_SYNC_ACK: "TimeSyncAck",
    ROOM_EVENT: "RoomEvent",
    ERROR: "Error",
}
CLIENT_TYPES: Final = frozenset(
    {
        CONNECT,
        DISCONNECT,
        HEARTBEAT,
        SIGNAL_OFFER,
        SIGNAL_ANSWER,
        SIGNAL_ICE_CANDIDATE,
        REGISTER,
        UNREGISTER,
        ROOM_CREATE,
        ROOM_JOIN,
        ROOM_LEAVE,
        TIME_SYNC,
    }
)
_VARIANT_NAMES: Final = frozenset(VARIANTS.values())
SERVER_VERSION: Final = "1.0.0"

# Required (✱) fields per client type: name -> expected kind.
_STR, _NUM, _STRS, _ANY = "str", "num", "strs", "any"
_REQUIRED: Final[dict[int, tuple[tuple[str, str], ...]]] = {
    CONNECT: (("client_id", _STR), ("auth_token", _STR)),
    DISCONNECT: (),
    HEARTBEAT: (("timestamp", _NUM),),
    SIGNAL_OFFER: (("target_client_id", _STR), ("signal_data", _STR)),
    SIGNAL_ANSWER: (("target_client_id", _STR), ("signal_data", _STR)),
    SIGNAL_ICE_CANDIDATE: (("target_client_id", _STR), ("signal_data", _STR)),
    REGISTER: (("version", _STR), ("client_id", _STR), ("auth_token", _STR)),
    UNREGISTER: (("version", _STR), ("client_id", _STR), ("auth_token", _STR)),
    ROOM_CREATE: (
        ("version", _STR),
        ("client_id", _STR),
        ("auth_token", _STR),
        ("role", _STR),
    ),
    ROOM_JOIN: (
        ("version", _STR),
        ("client_id", _STR),
        ("auth_token", _STR),
        ("room_id", _STR),
        ("role", _STR),
    ),
    ROOM_LEAVE: (
        ("version", _STR),
        ("client_id", _STR),
        ("auth_token", _STR),
        ("room_id", _STR),
    ),
    TIME_SYNC: (("t1", _NUM),),
}
# Optional fields that must have this kind when present (not null).
_OPTIONAL: Final[dict[int, tuple[tuple[str, str], ...]]] = {
    CONNECT: (("capabilities", _STRS),),
    DISCONNECT: (("client_id", _STR), ("reason", _STR)),
    SIGNAL_OFFER: (("request_id", _STR),),
    SIGNAL_ANSWER: (("request_id", _STR),),
    SIGNAL_ICE_CANDIDATE: (("request_id", _STR),),
    REGISTER: (("capabilities", _STRS), ("metadata", _ANY)),
    ROOM_CREATE: (("offer_sdp", _STR), ("room_id", _STR), ("metadata", _ANY)),
    ROOM_JOIN: (("offer_sdp", _STR), ("metadata", _ANY)),
    ROOM_LEAVE: (("reason", _STR),),
}


class BinaryError(Exception):
    """A frame refused with ERROR ``error_code`` and ``message`` (§3.1, §9)."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _malformed(reason: str) -> BinaryError:
    return BinaryError(2, f"Malformed message: {reason}")


@attrs.frozen
class Header:
    msg_type: int
    uuid: bytes
    payload_type: int


@attrs.frozen
class Request:
    """A decoded client frame: its header and the variant's fields."""

    header: Header
    fields: dict[str, Any]


def decode_header(data: bytes) -> Header:
    """The header of one frame after the §3.1 framing checks.

    Raises:
        BinaryError: code 2 (framing), 6 (payload type not served).
    """
    if len(data) < HEADER_LEN:
        raise _malformed("frame too short")
    start, msg_type, uuid, payload_type, length = HEADER.unpack_from(data)
    if start != START:
        raise _malformed("invalid start byte")
    if msg_type not in VARIANTS:
        raise _malformed(f"invalid message type 0x{msg_type:02x}")
    if not PAYLOAD_BINARY <= payload_type <= PAYLOAD_CBOR:
        raise _malformed(f"invalid payload type 0x{payload_type:02x}")
    if length == 0:
        raise _malformed("empty payload")
    if HEADER_LEN + length != len(data):
        raise _malformed("payload length mismatch")
    return Header(msg_type, bytes(uuid), payload_type)


def decode(data: bytes) -> Request:
    """One client frame: header, direction, payload type, variant and fields.

    Raises:
        BinaryError: see §3.1/§3.2 for each code and message.
    """
    header = decode_header(data)
    msg_type = header.msg_type
    if msg_type not in CLIENT_TYPES:
        raise _malformed(f"unexpected message type 0x{msg_type:02x}")
    if header.payload_type not in SERVED_PAYLOADS:
        raise BinaryError(6, "Unsupported payload type")
    body = memoryview(data)[HEADER_LEN:].tobytes()
    obj = _payload_object(body, header.payload_type)
    return Request(header, _fields(obj, msg_type))


def _payload_object(body: bytes, payload_type: int) -> dict[str, Any]:
    if payload_type == PAYLOAD_JSON:
        try:
            obj = loads(body)
        except JsonDecodeError:
            raise _malformed("invalid JSON payload") from None
    else:
        try:
            message = struct_pb2.Struct.FromString(body)
            obj = _from_struct(message, 0)
        except Exception:  # protobuf's DecodeError, recursion, bad UTF-8
            raise _malformed("invalid PROTOBUF payload") from None
    if not isinstance(obj, dict):
        raise _malformed("payload is not an object")
    return obj


def _fields(obj: dict[str, Any], msg_type: int) -> dict[str, Any]:
    variant = VARIANTS[msg_type]
    if len(obj) == 1:
        ((key, inner),) = obj.items()
        if key in _VARIANT_NAMES:
            if key != variant:
                raise _malformed("payload does not match message type")
            if not isinstance(inner, dict):
                raise _malformed("payload does not match message type")
            obj = inner
    for name, kind in _REQUIRED[msg_type]:
        if not _is(obj.get(name), kind):
            raise BinaryError(2, f"Missing or invalid '{name}' field")
    for name, kind in _OPTIONAL.get(msg_type, ()):
        value = obj.get(name)
        if value is not None and not _is(value, kind):
            raise BinaryError(2, f"Missing or invalid '{name}' field")
    version = obj.get("version")
    if isinstance(version, str) and version.encode() > SERVER_VERSION.encode():
        raise BinaryError(2, "Unsupported version: newer than server")
    return obj


def _is(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value is not None


# ------------------------------------------------------------------ Struct

_MAX_DEPTH: Final = 32


def _from_struct(message: struct_pb2.Struct, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    return {k: _from_value(v, depth + 1) for k, v in message.fields.items()}


def _from_value(value: struct_pb2.Value, depth: int) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _from_struct(value.struct_value, depth)
    if kind == "list_value":
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        return [_from_value(v, depth + 1) for v in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= 2**53:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def _to_value(target: struct_pb2.Value, value: Any) -> None:
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, (int, float)):
        target.number_value = float(value)
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, dict):
        inner = target.struct_value
        for k, v in value.items():
            _to_value(inner.fields[k], v)
    else:
        items = target.list_value
        for v in value:
            _to_value(items.values.add(), v)


def to_struct_bytes(obj: dict[str, Any]) -> bytes:
    """``obj`` as a serialized ``google.protobuf.Struct`` (numbers as doubles)."""
    message = struct_pb2.Struct()
    for k, v in obj.items():
        _to_value(message.fields[k], v)
    return message.SerializeToString(deterministic=True)


# ---------------------------------------------------------------- encoding


def encode(
    msg_type: int, uuid: bytes, payload_type: int, fields: dict[str, Any]
) -> bytes:
    """A frame carrying ``{Variant: fields}`` in ``payload_type``.

    Raises:
        BinaryError: code 2 when the payload exceeds 65 535 bytes.
    """
    obj = {VARIANTS[msg_type]: fields}
    if payload_type == PAYLOAD_PROTOBUF:
        body = to_struct_bytes(obj)
    else:
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_PAYLOAD:
        raise BinaryError(2, "message too large for target")
    return HEADER.pack(START, msg_type, uuid, payload_type, len(body)) + body


def error_fields(
    error_code: int, message: str, code: str | None, details: str | None
) -> dict[str, Any]:
    """The ``Error`` variant (§3.2): SM's fields, then the extensions."""
    return {
        "error_code": error_code,
        "error_message": message,
        "code": code,
        "details": details,
    }
