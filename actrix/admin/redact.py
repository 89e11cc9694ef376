"""The effective configuration as JSON with every secret redacted, and config diffs.

Every secret of the configuration is a :class:`~actrix.core.settings.Secret`
(shared key, KEK, TURN passwords and REST secrets, tokens, database and Redis
passwords, DSNs), so walking the frozen settings and replacing each Secret is
complete by construction; a test checks it against a config full of secrets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

import attrs

from actrix.core.settings import Secret, Settings

REDACTED: Final = "<redacted>"

# Settings fields that are bookkeeping, not configuration.
_SKIP: Final = frozenset({"warnings", "source"})


def _plain(value: Any, secret: Any) -> Any:
    if isinstance(value, Secret):
        return secret(value)
    if attrs.has(type(value)):
        return {
            f.name: _plain(getattr(value, f.name), secret)
            for f in attrs.fields(type(value))
            if f.name not in _SKIP
        }
    if isinstance(value, tuple | list):
        return [_plain(v, secret) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, secret) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def redacted_config(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready data, each secret ``"<redacted>"``."""
    data: dict[str, Any] = _plain(settings, lambda s: REDACTED)
    return data


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    else:
        out[prefix] = value


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Dotted keys whose values differ (secrets compared by digest, never shown)."""

    def fingerprint(secret: Secret) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(_plain(old, fingerprint), "", before)
    _flatten(_plain(new, fingerprint), "", after)
    return sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    )
