"""Identity tokens: the claims JSON (ais.md §2) and its ECIES envelope (ais.md §4).

The envelope is eciespy's default configuration, byte-compatible with the Rust
``ecies`` 0.2.9 crate the actr clients use: uncompressed 65-byte ephemeral key ‖
16-byte nonce ‖ 16-byte tag ‖ AES-256-GCM ciphertext, keyed by HKDF-SHA256 over
both uncompressed points. We call eciespy's own building blocks (its key classes,
``encapsulate``/``decapsulate`` and ``sym_encrypt``/``sym_decrypt``) rather than
``ecies.encrypt``/``decrypt`` only so that the parsed recipient key can be reused
across calls: ~185 µs to encrypt and ~140 µs to decrypt instead of ~210/~270 µs.
No cryptography is implemented here. The unit tests check against ``ecies``'s
top-level functions both ways and against the Rust crate's known-answer vector.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Final

from ecies.config import ECIES_CONFIG
from ecies.keys import PrivateKey, PublicKey
from ecies.utils import sym_decrypt, sym_encrypt

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
    except ValueError as e:
        raise TokenError("claims", f"invalid JSON: {e}") from e
    except RecursionError as e:
        raise TokenError("claims", "invalid JSON: nested too deeply") from e
    if not isinstance(obj, dict):
        raise TokenError("claims", "claims are not a JSON object")
    for key in ("realm_id", "actor_id", "expr_time", "psk"):
        if key not in obj:
            raise TokenError("claims", f"missing field `{key}`")
    actor_id = obj["actor_id"]
    if not isinstance(actor_id, str):
        raise TokenError("claims", "actor_id is not a string")
    try:
        actor_id.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate, which serde_json refuses
        raise TokenError("claims", "actor_id is not valid Unicode") from e
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


# Parsed keys are memoised: building a key object costs a point decompression or
# a scalar multiplication, and the same few KS keys are used for every token.
@lru_cache(maxsize=256)
def _recipient(public_key: bytes) -> PublicKey:
    return PublicKey(ECIES_CONFIG.elliptic_curve, public_key)


@lru_cache(maxsize=256)
def _receiver(secret_key: bytes) -> PrivateKey:
    return PrivateKey(ECIES_CONFIG.elliptic_curve, secret_key)


def encrypt_token(public_key: bytes, claims: Claims) -> bytes:
    """ECIES-encrypt the claims to a 33- or 65-byte secp256k1 public key."""
    return ecies_encrypt(public_key, encode_claims(claims))


def ecies_encrypt(public_key: bytes, plaintext: bytes) -> bytes:
    """The ECIES envelope of ``plaintext`` for ``public_key`` (see module doc)."""
    config = ECIES_CONFIG
    ephemeral = PrivateKey(config.elliptic_curve)
    sym_key = ephemeral.encapsulate(
        _recipient(public_key), config.is_hkdf_key_compressed
    )
    sealed = sym_encrypt(
        sym_key, plaintext, config.symmetric_algorithm, config.symmetric_nonce_length
    )
    return bytes(
        ephemeral.public_key.to_bytes(config.is_ephemeral_key_compressed) + sealed
    )


def ecies_decrypt(secret_key: bytes, token: bytes) -> bytes:
    """Open an ECIES envelope.

    Raises:
        TokenError: kind ``decrypt``.
    """
    if len(token) < OVERHEAD:
        raise TokenError("decrypt", "token too short")
    if token[0] != 0x04:
        raise TokenError("decrypt", "ephemeral key is not an uncompressed point")
    config = ECIES_CONFIG
    try:
        ephemeral = PublicKey(config.elliptic_curve, token[:EPHEMERAL_KEY_LEN])
        sym_key = ephemeral.decapsulate(
            _receiver(secret_key), config.is_hkdf_key_compressed
        )
        return bytes(
            sym_decrypt(
                sym_key,
                token[EPHEMERAL_KEY_LEN:],
                config.symmetric_algorithm,
                config.symmetric_nonce_length,
            )
        )
    except ValueError as e:  # bad point, bad scalar, or GCM tag mismatch
        raise TokenError("decrypt", "MAC check failed or invalid key material") from e
    except Exception as e:  # library-specific errors from coincurve/pycryptodome
        raise TokenError("decrypt", type(e).__name__) from e


def decrypt_token(secret_key: bytes, token: bytes) -> Claims:
    """Decrypt and parse a token with a 32-byte secp256k1 secret.

    Raises:
        TokenError: kind ``decrypt`` (wrong key, truncated or tampered token) or
            ``claims`` (plaintext is not valid claims).
    """
    if len(token) <= OVERHEAD:
        raise TokenError("decrypt", "token too short")
    return decode_claims(ecies_decrypt(secret_key, token))
