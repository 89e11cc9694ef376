"""The JSON room protocol's frames (rooms.md §2): text ↔ value objects.

Decoding is bounded: the edge caps the frame size; here numbers are limited to
``MAX_DIGITS`` digits (no NaN/Infinity) and containers to ``MAX_DEPTH`` levels,
so a hostile frame costs at most one linear parse. Encoding is compact with the
keys in §2.1 order and empty values omitted, as altair's encoder does.

Every relayed OFFER/CANDIDATE is written once: orjson writes the values it
writes exactly as the standard library does (no float — orjson writes ``1e-7``
where json writes ``1e-07`` — integers within 64 bits, string keys; checked by
one walk), at a third of the cost; the standard library writes the others and
whatever orjson refuses (lone surrogates). Parsing likewise: orjson's
value is kept when it holds no float and nests within ``MAX_DEPTH`` (the same
walk), since then json gives the same; orjson reads integers past 64 bits and
over-long numbers as floats, so a document with a float, or one orjson refuses,
is parsed again by json with the bounds above, which accepts or refuses it as
before.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs
import orjson

from actrix.rooms.model import ABSENT, Endpoint, PeerInfo

MAX_DEPTH: Final = 32
MAX_DIGITS: Final = 40
MAX_METADATA: Final = 4096
MAX_DISPLAY_NAME: Final = 128
_ROLES: Final = {
    "sender": "sender",
    "receiver": "receiver",
    "publisher": "sender",
    "subscriber": "receiver",
}
_ENVELOPE_STRINGS: Final = ("type", "peer_id", "target_id", "room_id", "request_id")


class JsonDecodeError(ValueError):
    """Not a JSON room envelope: ``INVALID_MESSAGE "invalid JSON"``."""


class PayloadError(ValueError):
    """A JOIN payload of the wrong shape: ``INVALID_MESSAGE "invalid payload"``."""


@attrs.define  # not frozen: one per frame (see model.SignalData)
class JsonRequest:
    """One decoded client frame; ``payload`` is ABSENT when absent or null."""

    type: str
    request_id: str | None = None
    room_id: str | None = None
    target_id: str | None = None
    payload: Any = ABSENT


@attrs.frozen
class JoinFields:
    display_name: str | None = None
    endpoint: Endpoint | None = None
    token: str | None = None
    role: str | None = None
    metadata: Any = None


def _number(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise JsonDecodeError("number too long")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise JsonDecodeError("number too long")
    return float(text)


def _constant(text: str) -> Any:
    raise JsonDecodeError(f"{text} is not JSON")


_DECODER: Final = json.JSONDecoder(
    parse_int=_number, parse_float=_float, parse_constant=_constant
)
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _depth_ok(value: Any, limit: int) -> bool:
    if isinstance(value, dict):
        if limit == 0:
            return False
        return all(_depth_ok(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        if limit == 0:
            return False
        return all(_depth_ok(v, limit - 1) for v in value)
    return True


def loads(data: bytes | str) -> Any:
    """Bounded ``json.loads``: digits, depth, constants.

    Raises:
        JsonDecodeError: not UTF-8 JSON within the bounds.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # json decides: it accepts some of these (1e400, lone surrogates)
    else:
        # Without a float (orjson reads integers past 64 bits, and numbers
        # json's bounds refuse, as floats) and within the depth, this is the
        # value json would give.
        if _orjson_writes_alike(value, MAX_DEPTH):
            return value
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise JsonDecodeError("invalid JSON") from e
    # Fewer brackets than the limit cannot nest past it; count them in C first.
    if text.count("{") + text.count("[") > MAX_DEPTH and not _depth_ok(
        value, MAX_DEPTH
    ):
        raise JsonDecodeError("nested too deeply")
    return value


def decode(data: bytes | str) -> JsonRequest:
    """One client frame (text or binary) as a :class:`JsonRequest`.

    Raises:
        JsonDecodeError: unparsable, not an object, or an envelope key mistyped.
    """
    obj = loads(data)
    if not isinstance(obj, dict):
        raise JsonDecodeError("not an object")
    get = obj.get
    for key in _ENVELOPE_STRINGS:
        value = get(key)
        if value is not None and not isinstance(value, str):
            raise JsonDecodeError(f"{key} is not a string")
    timestamp = get("timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int)
    ):
        raise JsonDecodeError("timestamp is not an integer")
    payload = get("payload")
    return JsonRequest(
        get("type") or "",
        get("request_id"),
        get("room_id"),
        get("target_id"),
        ABSENT if payload is None else payload,
    )


def join_fields(payload: Any) -> JoinFields:
    """The JoinPayload (§2.3).

    Raises:
        PayloadError: a non-object or a mistyped field.
    """
    if payload is ABSENT:
        return JoinFields()
    if not isinstance(payload, dict):
        raise PayloadError("not an object")
    name = payload.get("display_name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME):
        raise PayloadError("display_name")
    endpoint = payload.get("endpoint")
    parsed_endpoint = None
    if endpoint is not None:
        if not isinstance(endpoint, dict):
            raise PayloadError("endpoint")
        ip, port = endpoint.get("ip"), endpoint.get("port")
        if (
            not isinstance(ip, str)
            or isinstance(port, bool)
            or not isinstance(port, int)
            or not 0 <= port <= 65535
        ):
            raise PayloadError("endpoint")
        parsed_endpoint = Endpoint(ip, port)
    token = payload.get("token")
    if token is not None and not isinstance(token, str):
        raise PayloadError("token")
    role = payload.get("role")
    if role is not None:
        if not isinstance(role, str) or role not in _ROLES:
            raise PayloadError("role")
        role = _ROLES[role]
    metadata = payload.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not metadata_fits(metadata)
    ):
        raise PayloadError("metadata")
    return JoinFields(name or None, parsed_endpoint, token or None, role, metadata)


def metadata_fits(metadata: dict[str, Any]) -> bool:
    """Metadata is at most 4 096 bytes as compact JSON (rooms.md §7)."""
    return len(compact_bytes(metadata)) <= MAX_METADATA


def payload_token(payload: Any) -> str | None:
    """``payload.token`` of a DISCOVER, if it is a string."""
    if isinstance(payload, dict):
        token = payload.get("token")
        if isinstance(token, str):
            return token
    return None


def time_sync_t1(payload: Any) -> int | float | None:
    """``payload.t1`` if it is a JSON number, else None."""
    if isinstance(payload, dict):
        t1 = payload.get("t1")
        if isinstance(t1, (int, float)) and not isinstance(t1, bool):
            return t1
    return None


# ---------------------------------------------------------------- encoding


_INT64_MIN: Final = -(2**63)
_UINT64_END: Final = 2**64


def _orjson_writes_alike(value: Any, depth: int = MAX_DEPTH + 1) -> bool:
    """Whether orjson writes ``value`` as ``_ENCODER`` does: no float, no
    integer past 64 bits, string keys, at most ``depth`` containers deep (a
    walk in Python, cheaper than json's writer for the small objects relayed
    here; strings and integers, the usual members, are checked without a
    call)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT64_MIN <= value < _UINT64_END)
    if depth == 0:
        return False
    if kind is dict:
        items: Any = value.values()
        for key in value:
            if type(key) is not str:
                return False
    elif kind is list:
        items = value
    else:
        return False  # floats, tuples, subclasses: the standard library
    for item in items:
        kind = type(item)
        if kind is str:
            continue
        if kind is int:
            if not _INT64_MIN <= item < _UINT64_END:
                return False
        elif not _orjson_writes_alike(item, depth - 1):
            return False
    return True


def _write(value: Any, alike: bool) -> bytes:
    if alike:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass  # lone surrogates and the like: as the standard library does
    return _ENCODER.encode(value).encode("utf-8")


def compact_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (``ensure_ascii=False``)."""
    return _write(value, _orjson_writes_alike(value))


def compact(value: Any) -> str:
    if _orjson_writes_alike(value):
        try:
            return orjson.dumps(value).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return _ENCODER.encode(value)


def encode(
    type_: str,
    timestamp: int,
    *,
    peer_id: str | None = None,
    target_id: str | None = None,
    room_id: str | None = None,
    payload: Any = ABSENT,
    request_id: str | None = None,
) -> bytes:
    """A server frame (UTF-8), keys in §2.1 order, empty or absent values omitted."""
    obj: dict[str, Any] = {"type": type_}
    if peer_id:
        obj["peer_id"] = peer_id
    if target_id:
        obj["target_id"] = target_id
    if room_id:
        obj["room_id"] = room_id
    if payload is not ABSENT and payload is not None:
        obj["payload"] = payload
    obj["timestamp"] = timestamp
    if request_id:
        obj["request_id"] = request_id
    # Only the payload needs the walk: the other values are strings and a
    # millisecond time.
    alike = "payload" not in obj or _orjson_writes_alike(obj["payload"])
    return _write(obj, alike)


def peer_list(room_id: str, peers: tuple[PeerInfo, ...]) -> dict[str, Any]:
    """PeerListPayload (§2.3)."""
    return {"room_id": room_id, "peers": [p.to_json() for p in peers]}


def error(
    code: str,
    message: str,
    timestamp: int,
    details: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """ERROR: no ``peer_id``/``room_id`` (§2.2)."""
    payload: dict[str, Any] = {"code": code, "message": message}
    if details:
        payload["details"] = details
    return encode("ERROR", timestamp, payload=payload, request_id=request_id)
