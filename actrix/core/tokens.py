"""Identity tokens: the claims JSON (ais.md §2) and its ECIES envelope (ais.md §4).

``encrypt_token``/``decrypt_token`` use eciespy with its default configuration,
which is byte-compatible with the Rust ``ecies`` 0.2.9 crate the actr clients use:
uncompressed 65-byte ephemeral key ‖ 16-byte nonce ‖ 16-byte tag ‖ ciphertext.
Do not change ``ECIES_CONFIG``. Both calls cost a few hundred microseconds.
"""

from __future__ import annotations

import json
from typing import Final

import ecies

from actrix.core.interfaces import Claims

EPHEMERAL_KEY_LEN: Final = 65
NONCE_LEN: Final = 16
TAG_LEN: Final = 16
OVERHEAD: Final = EPHEMERAL_KEY_LEN + NONCE_LEN + TAG_LEN
PSK_LEN: Final = 32


class TokenError(Exception):
    """A token cannot be decrypted (``decrypt``) or its claims parsed (``claims``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def encode_claims(claims: Claims) -> bytes:
    """The exact claims JSON the original issues: compact, keys in spec order."""
    return json.dumps(
        {
            "realm_id": claims.realm_id,
            "actor_id": claims.actor_id,
            "expr_time": claims.expr_time,
            "psk": list(claims.psk),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def _uint(value: object, name: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError("claims", f"{name} is not an integer")
    if not 0 <= value < (1 << bits):
        raise TokenError("claims", f"{name} is out of range")
    return value


def decode_claims(data: bytes) -> Claims:
    """Parse claims JSON (any key order/whitespace).

    Raises:
        TokenError: kind ``claims`` with the reason.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise TokenError("claims", f"invalid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise TokenError("claims", "claims are not a JSON object")
    for key in ("realm_id", "actor_id", "expr_time", "psk"):
        if key not in obj:
            raise TokenError("claims", f"missing field `{key}`")
    actor_id = obj["actor_id"]
    if not isinstance(actor_id, str):
        raise TokenError("claims", "actor_id is not a string")
    psk = obj["psk"]
    if not isinstance(psk, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in psk
    ):
        raise TokenError("claims", "psk is not an array of bytes")
    return Claims(
        realm_id=_uint(obj["realm_id"], "realm_id", 32),
        actor_id=actor_id,
        expr_time=_uint(obj["expr_time"], "expr_time", 64),
        psk=bytes(psk),
    )


def encrypt_token(public_key: bytes, claims: Claims) -> bytes:
    """ECIES-encrypt the claims to a 33- or 65-byte secp256k1 public key."""
    return bytes(ecies.encrypt(public_key, encode_claims(claims)))


def decrypt_token(secret_key: bytes, token: bytes) -> Claims:
    """Decrypt and parse a token with a 32-byte secp256k1 secret.

    Raises:
        TokenError: kind ``decrypt`` (wrong key, truncated or tampered token) or
            ``claims`` (plaintext is not valid claims).
    """
    if len(token) <= OVERHEAD:
        raise TokenError("decrypt", "token too short")
    if token[0] != 0x04:
        raise TokenError("decrypt", "ephemeral key is not an uncompressed point")
    try:
        plaintext = ecies.decrypt(secret_key, token)
    except Exception as e:  # eciespy raises ValueError and library-specific errors
        raise TokenError("decrypt", f"{type(e).__name__}") from e
    return decode_claims(plaintext)
