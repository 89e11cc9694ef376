"""nonce-auth: HMAC-signed, single-use credentials between actrix nodes (ks.md §1).

A credential is ``{timestamp, nonce, signature}`` where ``signature`` is the
standard base64 of ``HMAC-SHA256(secret, str(timestamp) ‖ nonce ‖ payload)``.
:class:`NonceVerifier` checks, in order, the ±60 s window, the signature (in
constant time, before the nonce is touched, so a forged credential cannot burn a
nonce) and the nonce's freshness, then consumes the nonce for 300 s.
:func:`sign_credential` is the client side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any, Final, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.storage import StorageUnavailable

log = Logger()

WINDOW_SECONDS: Final = 60
NONCE_TTL_SECONDS: Final = 300
MAX_NONCE_LEN: Final = 256
_U64_MAX: Final = (1 << 64) - 1


@attrs.frozen(repr=False)
class NonceCredential:
    """One signed credential."""

    timestamp: int
    nonce: str
    signature: str

    def __repr__(self) -> str:
        return f"NonceCredential(timestamp={self.timestamp}, nonce={self.nonce!r})"

    def to_json(self) -> dict[str, Any]:
        """The JSON object form used in KS and AIS requests."""
        return {
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "signature": self.signature,
        }

    def to_header(self) -> str:
        """The compact JSON text (query parameter or ``X-Actrix-Credential``)."""
        return json.dumps(self.to_json(), separators=(",", ":"))


class CredentialFormatError(ValueError):
    """A credential is missing fields or has fields of the wrong type."""


def parse_timestamp(value: object) -> int:
    """A u64 timestamp from JSON (int) or a query string (ASCII decimal).

    Raises:
        CredentialFormatError: not a non-negative integer below 2**64.
    """
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise CredentialFormatError("timestamp is not a decimal integer")
        # Count the digits before int(): past 4 300 it raises ValueError, and
        # every digit beyond 20 is out of range anyway.
        if len(value.lstrip("0")) > len(str(_U64_MAX)):
            raise CredentialFormatError("timestamp is out of range")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CredentialFormatError("timestamp is not an integer")
    if not 0 <= value <= _U64_MAX:
        raise CredentialFormatError("timestamp is out of range")
    return value


def credential_from_json(obj: object) -> NonceCredential:
    """A credential from its decoded JSON object.

    Raises:
        CredentialFormatError: a field is missing or has the wrong type.
    """
    if not isinstance(obj, dict):
        raise CredentialFormatError("credential is not an object")
    for key in ("timestamp", "nonce", "signature"):
        if key not in obj:
            raise CredentialFormatError(f"missing field `{key}`")
    nonce, signature = obj["nonce"], obj["signature"]
    if isinstance(obj["timestamp"], str):
        raise CredentialFormatError("timestamp is not an integer")
    if not isinstance(nonce, str) or not isinstance(signature, str):
        raise CredentialFormatError("nonce and signature must be strings")
    if not (_encodable(nonce) and _encodable(signature)):
        # JSON escapes can spell lone surrogates, which no signer can have
        # signed and which would crash the UTF-8 encoding of the HMAC input.
        raise CredentialFormatError("nonce and signature must be valid Unicode")
    return NonceCredential(parse_timestamp(obj["timestamp"]), nonce, signature)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def credential_from_text(text: str | bytes) -> NonceCredential:
    """A credential from JSON text (query parameter or header).

    Raises:
        CredentialFormatError: not JSON, or not a credential object.
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: deep nesting
        raise CredentialFormatError("credential is not JSON") from e
    return credential_from_json(obj)


def compute_signature(secret: bytes, timestamp: int, nonce: str, payload: str) -> str:
    """Base64 HMAC-SHA256 over ``timestamp ‖ nonce ‖ payload`` (no separators)."""
    message = str(timestamp).encode("ascii") + nonce.encode() + payload.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_credential(
    secret: bytes, payload: str, now: float, nonce: str | None = None
) -> NonceCredential:
    """A fresh credential for ``payload`` (random UUIDv4 nonce unless given)."""
    timestamp = int(now)
    nonce = str(uuid.uuid4()) if nonce is None else nonce
    return NonceCredential(
        timestamp, nonce, compute_signature(secret, timestamp, nonce, payload)
    )


class AuthError(Exception):
    """A credential was refused.

    ``kind``: ``window`` or ``signature`` (HTTP 401), ``replay`` (403),
    ``storage`` (500), ``unavailable`` (the nonce store's database cannot be
    reached: 503). Messages are for logs, never for the client.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NonceConsumer(Protocol):
    """Where nonces are consumed (:class:`actrix.core.nonces.NonceStore`)."""

    async def consume(self, nonce: str, now: int, ttl: int) -> bool: ...


class NonceVerifier:
    """Verifies credentials signed with one shared secret."""

    def __init__(
        self,
        secret: bytes,
        store: NonceConsumer,
        clock: IReactorTime,
        window: int = WINDOW_SECONDS,
        ttl: int = NONCE_TTL_SECONDS,
    ) -> None:
        self._secret = secret
        self._store = store
        self._clock = clock
        self._window = window
        self._ttl = ttl

    def sign(self, payload: str) -> NonceCredential:
        """A credential this verifier (or a peer with the same secret) accepts."""
        return sign_credential(self._secret, payload, self._clock.seconds())

    async def verify(self, credential: NonceCredential, payload: str) -> None:
        """Accept ``credential`` for ``payload`` once, or raise.

        Raises:
            AuthError: see the class for the kinds.
        """
        now = int(self._clock.seconds())
        if abs(now - credential.timestamp) > self._window:
            raise AuthError("window", "timestamp outside the allowed window")
        if len(credential.nonce) > MAX_NONCE_LEN or not _encodable(credential.nonce):
            raise AuthError("signature", "nonce too long or not valid Unicode")
        expected = compute_signature(
            self._secret, credential.timestamp, credential.nonce, payload
        )
        # compare_digest on ASCII str needs both ASCII; encode to be total.
        if not hmac.compare_digest(
            expected.encode(), credential.signature.encode("utf-8", "replace")
        ):
            raise AuthError("signature", "invalid signature")
        try:
            fresh = await self._store.consume(credential.nonce, now, self._ttl)
        except StorageUnavailable as e:
            raise AuthError("unavailable", f"nonce store: {e}") from e
        except Exception as e:
            raise AuthError("storage", f"nonce store failed: {type(e).__name__}") from e
        if not fresh:
            raise AuthError("replay", "nonce already used")
