"""The room service's value objects, shared by the service and both codecs.

Nothing here knows a wire: :class:`PeerInfo` and :class:`Signal` are what the
service hands to a member's connection, which encodes them for its own protocol.
:class:`SignalData` holds a relayed payload in the form its sender used and
converts it for the other wire (rooms.md §8).
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

# JSON error codes (rooms.md §9) and the binary error_code each maps to.
INVALID_MESSAGE: Final = "INVALID_MESSAGE"
ROOM_NOT_FOUND: Final = "ROOM_NOT_FOUND"
PEER_NOT_FOUND: Final = "PEER_NOT_FOUND"
NOT_IN_ROOM: Final = "NOT_IN_ROOM"
ALREADY_IN_ROOM: Final = "ALREADY_IN_ROOM"
ROOM_FULL: Final = "ROOM_FULL"
UNAUTHORIZED: Final = "UNAUTHORIZED"
RATE_LIMITED: Final = "RATE_LIMITED"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"

BINARY_CODES: Final = {
    UNAUTHORIZED: 1,
    INVALID_MESSAGE: 2,
    PEER_NOT_FOUND: 5,
    ROOM_NOT_FOUND: 7,
    ROOM_FULL: 8,
    ALREADY_IN_ROOM: 9,
    NOT_IN_ROOM: 10,
    RATE_LIMITED: 11,
    INTERNAL_ERROR: 12,
}

ROLE_SENDER: Final = "sender"
ROLE_RECEIVER: Final = "receiver"

OFFER: Final = "OFFER"
ANSWER: Final = "ANSWER"
CANDIDATE: Final = "CANDIDATE"
SIGNAL_KINDS: Final = (OFFER, ANSWER, CANDIDATE)

# A signal whose JSON payload was absent (distinct from JSON null).
ABSENT: Final = object()


class RoomError(Exception):
    """A request refused with a §9 error.

    ``message`` is the JSON text; ``binary_message`` (default: ``message``)
    and ``binary_code`` (default: by ``code``) are what binary clients get.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: str | None = None,
        *,
        binary_code: int | None = None,
        binary_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.binary_code = BINARY_CODES[code] if binary_code is None else binary_code
        self.binary_message = message if binary_message is None else binary_message


@attrs.frozen
class Endpoint:
    ip: str
    port: int


@attrs.frozen
class PeerInfo:
    """A member as others see it (rooms.md §2.3)."""

    peer_id: str
    joined_at: int
    display_name: str | None = None
    endpoint: Endpoint | None = None
    role: str | None = None
    metadata: Any = None  # a JSON object, or None

    def to_json(self) -> dict[str, Any]:
        """The PeerInfo object, keys in §2.3 order, absent values omitted."""
        out: dict[str, Any] = {"peer_id": self.peer_id}
        if self.display_name:
            out["display_name"] = self.display_name
        if self.endpoint is not None:
            out["endpoint"] = {"ip": self.endpoint.ip, "port": self.endpoint.port}
        out["joined_at"] = self.joined_at
        if self.role is not None:
            out["role"] = self.role
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


# SignalData, Signal (and json_codec.JsonRequest) are made for every relayed
# message and never changed: plain attrs classes, since a frozen one sets each
# field through object.__setattr__ (three times the cost).
@attrs.define
class SignalData:
    """A relayed payload: a JSON value (``value``) or a binary ``text``."""

    value: Any = ABSENT
    text: str | None = None

    def as_text(self) -> str:
        """§8 JSON → binary ``signal_data``."""
        if self.text is not None:
            return self.text
        value = self.value
        if value is ABSENT:
            return ""
        if isinstance(value, dict) and len(value) == 1:
            inner = value.get("signal_data")
            if isinstance(inner, str):
                return inner
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def as_json(self) -> Any:
        """§8 binary → JSON ``payload`` (ABSENT when a JSON sender sent none)."""
        if self.text is None:
            return self.value
        try:
            parsed = json.loads(self.text)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        return {"signal_data": self.text}


@attrs.define
class Signal:
    """OFFER/ANSWER/CANDIDATE from ``source`` to ``target``.

    ``uuid``: the binary sender's message UUID (None from JSON senders).
    """

    kind: str
    source: str
    target: str
    data: SignalData
    request_id: str | None = None
    uuid: bytes | None = None


@attrs.frozen
class JoinResult:
    """What a successful join/create tells the joiner."""

    room_id: str
    realm_id: int
    peers: tuple[PeerInfo, ...]
    ice_servers: list[dict[str, Any]]
    created_at: int


@attrs.frozen
class ConnectResult:
    """A binary session opened by CONNECT."""

    session_id: str
    ice_servers: list[dict[str, Any]]
    expires_at: int | None


@attrs.frozen
class RoomView:
    """A room for the REST API."""

    room_id: str
    realm_id: int
    max_peers: int
    created_at: int
    persistent: bool
    peers: tuple[PeerInfo, ...]
