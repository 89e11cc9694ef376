"""The key-encryption key: KS secrets sealed at rest with AES-256-GCM (ks.md §4).

Stored form: ``base64(nonce[12] ‖ AES-256-GCM(KEK, nonce, base64 secret) ‖
tag[16])``, no AAD, byte-compatible with the original. The KEK comes from
``kek_file`` (trimmed content) > ``kek_env`` (environment variable) > ``kek``
(inline), as 64 hex characters or base64 decoding to exactly 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
import string
from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from actrix.core.config import KsConfig

KEK_LEN: Final = 32
NONCE_LEN: Final = 12


class KekError(Exception):
    """The KEK cannot be loaded, or does not open the stored secrets."""


def parse_kek(text: str) -> bytes:
    """32 key bytes from hex or base64 text.

    Raises:
        KekError: any other format or length (the value is never echoed).
    """
    text = text.strip()
    if len(text) == 2 * KEK_LEN and all(c in string.hexdigits for c in text):
        return bytes.fromhex(text)
    if len(text) in (43, 44):
        padded = text + "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            try:
                key = base64.urlsafe_b64decode(padded)
            except (binascii.Error, ValueError) as e:
                raise KekError("KEK is not valid base64") from e
        if len(key) == KEK_LEN:
            return key
    raise KekError("KEK must be 64 hex characters or base64 of exactly 32 bytes")


def load_kek(
    config: KsConfig, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The configured KEK, or None when none is configured.

    Raises:
        KekError: the file or variable cannot be read or the value is malformed.
    """
    environ = os.environ if environ is None else environ
    if config.kek_file is not None:
        try:
            text = config.kek_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise KekError(
                f"services.ks.kek_file: cannot read {config.kek_file}"
            ) from e
        return _parse_from("services.ks.kek_file", text)
    if config.kek_env is not None:
        value = environ.get(config.kek_env)
        if value is None:
            raise KekError(
                f"services.ks.kek_env: environment variable {config.kek_env} is unset"
            )
        return _parse_from("services.ks.kek_env", value)
    if config.kek is not None:
        return _parse_from("services.ks.kek", config.kek.value)
    return None


def _parse_from(source: str, text: str) -> bytes:
    try:
        return parse_kek(text)
    except KekError as e:
        raise KekError(f"{source}: {e}") from e


def seal(kek: bytes, secret_b64: str) -> str:
    """Encrypt the base64 secret string for storage."""
    nonce = os.urandom(NONCE_LEN)
    sealed = AESGCM(kek).encrypt(nonce, secret_b64.encode("ascii"), None)
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(kek: bytes, stored: str) -> str:
    """Decrypt a stored secret back to its base64 string.

    Raises:
        KekError: wrong KEK, or the stored value is not a sealed secret.
    """
    try:
        raw = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError) as e:
        raise KekError("stored secret is not base64") from e
    if len(raw) <= NONCE_LEN + 16:
        raise KekError("stored secret is too short to be sealed")
    try:
        plain = AESGCM(kek).decrypt(raw[:NONCE_LEN], raw[NONCE_LEN:], None)
    except InvalidTag as e:
        raise KekError("KEK does not open the stored secret (wrong KEK?)") from e
    return plain.decode("ascii", "replace")
