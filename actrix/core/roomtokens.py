"""Room tokens (rooms.md §4.1): canonical claims, HMAC-SHA256, ``rt1.`` text form.

Minting and the format checks (§4.3 rows 2 and 4) live here so the CLI, the
REST minting endpoint and the room service share one implementation. The realm
secrets themselves are kept by :mod:`actrix.core.realms`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Final

import attrs

PREFIX: Final = "rt1."
MAX_TOKEN_LEN: Final = 2048
ROLES: Final = ("sender", "receiver", "any")
ROLE_ALIASES: Final = {"publisher": "sender", "subscriber": "receiver"}
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_REQUIRED: Final = ("exp", "kid", "nonce", "realm_id", "role", "room")
_OPTIONAL: Final = ("max_uses", "peer")


class TokenFormatError(ValueError):
    """The text is not a well-formed room token (§4.3 row 2)."""


@attrs.frozen
class RoomClaims:
    """The claims of one room token."""

    realm_id: int
    room: str
    role: str
    exp: int
    nonce: str
    kid: int
    peer: str | None = None
    max_uses: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The claims object, optional keys omitted (never ``null``)."""
        out: dict[str, Any] = {
            "exp": self.exp,
            "kid": self.kid,
            "nonce": self.nonce,
            "realm_id": self.realm_id,
            "role": self.role,
            "room": self.room,
        }
        if self.max_uses is not None:
            out["max_uses"] = self.max_uses
        if self.peer is not None:
            out["peer"] = self.peer
        return out

    def grants_room(self, room: str) -> bool:
        """Whether the ``room`` claim (exact, ``prefix*`` or ``*``) covers ``room``."""
        if self.room.endswith("*"):
            return room.startswith(self.room[:-1])
        return room == self.room

    def grants_role(self, role: str | None) -> bool:
        return self.role == "any" or role is None or role == self.role


def canonical_json(obj: dict[str, Any]) -> bytes:
    """§4.1 canonical bytes: sorted keys, no whitespace, UTF-8 unescaped."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise TokenFormatError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenFormatError("not base64url") from e


def new_nonce() -> str:
    """16 CSPRNG bytes, base64url without padding (22 characters)."""
    return _b64(secrets.token_bytes(16))


def normalize_role(role: str) -> str | None:
    """``sender``/``receiver``/``any`` (aliases mapped), or None when unknown."""
    role = ROLE_ALIASES.get(role, role)
    return role if role in ROLES else None


def check_claims(claims: RoomClaims) -> None:
    """Raise :class:`TokenFormatError` when a claim breaks a §4.1 rule."""
    if not 0 <= claims.realm_id <= 0xFFFFFFFF:
        raise TokenFormatError("realm_id out of range")
    if not 1 <= len(claims.room.encode("utf-8")) <= 256:
        raise TokenFormatError("room length")
    if claims.role not in ROLES:
        raise TokenFormatError("role")
    if claims.peer is not None and not 1 <= len(claims.peer) <= 128:
        raise TokenFormatError("peer length")
    if claims.max_uses is not None and claims.max_uses < 1:
        raise TokenFormatError("max_uses")
    if not _NONCE.match(claims.nonce):
        raise TokenFormatError("nonce")
    if claims.kid < 1 or claims.exp < 0:
        raise TokenFormatError("kid or exp")


def mint(claims: RoomClaims, secret: bytes) -> str:
    """The ``rt1.`` token for ``claims`` signed with the realm's room ``secret``."""
    check_claims(claims)
    body = canonical_json(claims.to_json())
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{PREFIX}{_b64(body)}.{_b64(mac)}"


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenFormatError(f"{key} is not an integer")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TokenFormatError(f"{key} is not a string")
    return value


def parse(token: str) -> tuple[RoomClaims, bytes, bytes]:
    """Split and decode a token: ``(claims, signed bytes, mac)``; no MAC check.

    Raises:
        TokenFormatError: prefix, base64url, JSON, key set, types or the
            canonical re-encoding is wrong.
    """
    if len(token) > MAX_TOKEN_LEN or not token.startswith(PREFIX):
        raise TokenFormatError("prefix or length")
    body_text, dot, mac_text = token[len(PREFIX) :].partition(".")
    if not dot or "." in mac_text:
        raise TokenFormatError("shape")
    body, mac = _unb64(body_text), _unb64(mac_text)
    if len(mac) != 32:
        raise TokenFormatError("mac length")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise TokenFormatError("claims are not JSON") from e
    if not isinstance(obj, dict):
        raise TokenFormatError("claims are not an object")
    keys = set(obj)
    if not set(_REQUIRED) <= keys or not keys <= set(_REQUIRED + _OPTIONAL):
        raise TokenFormatError("key set")
    claims = RoomClaims(
        realm_id=_int(obj, "realm_id"),
        room=_str(obj, "room"),
        role=_str(obj, "role"),
        exp=_int(obj, "exp"),
        nonce=_str(obj, "nonce"),
        kid=_int(obj, "kid"),
        peer=_str(obj, "peer") if "peer" in obj else None,
        max_uses=_int(obj, "max_uses") if "max_uses" in obj else None,
    )
    check_claims(claims)
    if canonical_json(claims.to_json()) != body:
        raise TokenFormatError("not canonical")
    return claims, body, mac


def signature_valid(body: bytes, mac: bytes, secret: bytes) -> bool:
    """HMAC-SHA256 check in constant time (§4.3 row 4)."""
    return hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), mac)
