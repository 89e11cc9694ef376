"""The small contracts that let services use each other without importing each other.

``tap.py`` passes either the in-process implementation or an HTTP client for a
remote node. Value objects here are what crosses those boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from actrix.proto import actr_pb2


@attrs.frozen
class KeyRecord:
    """A KS key pair's public half, as handed to AIS."""

    key_id: int
    public_key: bytes  # 33-byte compressed secp256k1 point
    expires_at: int  # Unix seconds; 0 = never
    tolerance_seconds: int


@attrs.frozen(repr=False)
class SecretKey:
    """A KS key pair's secret half, as handed to credential validators."""

    key_id: int
    secret_key: bytes  # 32-byte secp256k1 scalar
    expires_at: int
    tolerance_seconds: int

    def __repr__(self) -> str:
        return f"SecretKey(key_id={self.key_id}, expires_at={self.expires_at})"


class KeyProviderError(Exception):
    """The key server could not be asked (transport, auth or server failure)."""


class KeyStoreUnavailable(KeyProviderError):
    """The key store's database cannot be reached now (HTTP 503; retry later)."""


class KeyProvider(Protocol):
    """Mints key pairs and hands out secrets (in-process KS or its HTTP client)."""

    async def generate_key(self) -> KeyRecord:
        """A fresh key pair's public half. Raises KeyProviderError."""
        ...

    async def secret_key(self, key_id: int) -> SecretKey | None:
        """The secret of ``key_id``; None if unknown or past its tolerance.

        Raises KeyProviderError when the KS cannot answer.
        """
        ...


@attrs.frozen(repr=False)
class Claims:
    """What a valid identity token says (ais.md §2)."""

    realm_id: int
    actor_id: str
    expr_time: int
    psk: bytes
    key_in_tolerance: bool = False

    def __repr__(self) -> str:
        return (
            f"Claims(realm_id={self.realm_id}, actor_id={self.actor_id!r}, "
            f"expr_time={self.expr_time})"
        )


class CredentialError(Exception):
    """A credential was rejected; ``reason`` follows ``Credential validation failed: ``.

    ``kind`` is a short stable label for metrics and logs (``expired``,
    ``realm_mismatch``, ``decrypt``, ``claims``, ``unknown_key``, ``ks_error``).
    """

    def __init__(self, kind: str, reason: str, code: int = 401) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.code = code


class CredentialValidator(Protocol):
    """Checks identity tokens (signaling.md §4.2), shared by signaling and TURN."""

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        """Decrypt and check a token. Raises CredentialError."""
        ...


class IdentityIssuer(Protocol):
    """Issues ActrIds and identity tokens (in-process AIS or its HTTP client)."""

    async def register(
        self, request: actr_pb2.RegisterRequest
    ) -> actr_pb2.RegisterResponse:
        """Allocate a new ActrId and credential; errors come back in the response."""
        ...

    async def refresh(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        """A new credential and PSK for an existing ActrId (same serial)."""
        ...


@attrs.frozen
class RealmInfo:
    """One realm row."""

    realm_id: int
    name: str
    status: str  # stored status: Normal | Suspended | Terminated | other
    expires_at: int | None
    created_at: int
    updated_at: int

    def state(self, now: float) -> str:
        """``active``, ``suspended`` or ``expired`` at ``now``."""
        if self.expires_at is not None and now > self.expires_at:
            return "expired"
        if self.status in ("Suspended", "Terminated"):
            return "suspended"
        return "active"


class RealmDirectory(Protocol):
    """Realm and ACL lookups (synchronous, served from memory)."""

    def realm(self, realm_id: int) -> RealmInfo | None:
        """The realm, or None if unknown."""
        ...

    def realm_problem(self, realm_id: int) -> str | None:
        """Why the realm may not be used now (signaling.md §4.1), or None."""
        ...

    def acl_allowed(self, realm_id: int, from_type: str, to_type: str) -> bool:
        """The decision for the triple (an explicit DENY wins); no rule means deny."""
        ...


class AclRegistry(Protocol):
    """Where a registration's declared ACL goes (see ``core/realms``)."""

    async def replace_acl(
        self, realm_id: int, to_type: str, rules: Mapping[str, bool]
    ) -> None:
        """Make ``rules`` (from type key -> allow) what ``to_type`` declares.

        Replaces the previous registration's declarations for ``to_type`` in
        the realm; operator rules stay. Lookups see the result on return.
        """
        ...


class SignalingRealms(RealmDirectory, AclRegistry, Protocol):
    """What signaling needs: lookups, and a place for registrations' ACLs."""
