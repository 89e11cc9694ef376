"""Revoked actors: the ``actor_revocation`` table of the realm store, and the
in-memory list every hot path asks.

A revocation names an actor by realm and serial (serials are never reused, so
this covers every token issued to that ActrId, the current one and any refresh)
and lasts until every token it could have been issued has expired
(``expires_at``); then the row is purged. The CLI and the admin API write rows;
each daemon process reads the whole table at start and again whenever the realm
store changes (SQLite ``data_version`` poll, PostgreSQL NOTIFY: the
:class:`~actrix.core.realms.RealmCache` change feed) and hands the identities it
had not seen yet to its listeners, which close sockets and allocations.

:class:`RevokingValidator` wraps the shared
:class:`~actrix.core.interfaces.CredentialValidator`: a token of a revoked actor
fails with ``revoked`` wherever it is checked (signaling messages and URL
identity, TURN usernames). The check is one set lookup of the token's actor id
head (``<serial hex>@<realm>``), and a truth test when nothing is revoked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.directory import ActorKey
from actrix.core.interfaces import Claims, CredentialError, CredentialValidator
from actrix.core.storage import (
    Database,
    RerunWhileChanged,
)

if TYPE_CHECKING:
    from actrix.core.config import Settings

log = Logger()

MAX_REASON: Final = 200  # characters kept of an operator's reason
DEFAULT_LIFETIME: Final = 86400  # without a local AIS: a generous token lifetime
REVOKED_TEXT: Final = "identity revoked"


@attrs.frozen
class Revocation:
    """One ``actor_revocation`` row."""

    realm_id: int
    serial: int
    actor_id: str  # the ActrId text as the operator gave it
    reason: str
    revoked_at: int
    expires_at: int

    @property
    def key(self) -> ActorKey:
        return (self.realm_id, self.serial)


def revocation_lifetime(settings: Settings) -> int:
    """Seconds a revocation must last: the longest token lifetime AIS gives.

    The local AIS's ``token_ttl_secs`` when this config runs one, else a day
    (tokens of a remote AIS; a longer revocation costs one small row).
    """
    ais = settings.services.ais
    if ais is not None:
        return int(ais.token_ttl_secs)
    return DEFAULT_LIFETIME


def clean_reason(reason: str) -> str:
    """An operator's reason, single line and bounded."""
    text = " ".join(reason.split())
    return text[:MAX_REASON]


# ---------------------------------------------------------------------------
# SQL (runs on the database thread, or in the CLI)

_COLUMNS = "realm_id, serial, actor_id, reason, revoked_at, expires_at"


def _row(row: Sequence[Any]) -> Revocation:
    return Revocation(
        int(row[0]),
        int(str(row[1]), 16),
        str(row[2]),
        str(row[3]),
        int(row[4]),
        int(row[5]),
    )


def add_revocation_txn(txn: Any, revocation: Revocation) -> None:
    """Insert or extend a revocation (the later expiry and the new reason win)."""
    txn.execute(
        f"INSERT INTO actor_revocation ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
        " ON CONFLICT (realm_id, serial) DO UPDATE SET"
        " actor_id = excluded.actor_id, reason = excluded.reason,"
        " revoked_at = excluded.revoked_at,"
        " expires_at = CASE WHEN excluded.expires_at > actor_revocation.expires_at"
        " THEN excluded.expires_at ELSE actor_revocation.expires_at END",
        (
            revocation.realm_id,
            f"{revocation.serial:x}",
            revocation.actor_id,
            revocation.reason,
            revocation.revoked_at,
            revocation.expires_at,
        ),
    )


def list_revocations_txn(txn: Any, now: int) -> list[Revocation]:
    """Every revocation still in force at ``now``."""
    txn.execute(
        f"SELECT {_COLUMNS} FROM actor_revocation"  # noqa: S608
        " WHERE expires_at >= ? ORDER BY revoked_at, realm_id, serial",
        (now,),
    )
    return [_row(r) for r in txn.fetchall()]


def purge_revocations_txn(txn: Any, now: int) -> int:
    """Delete the revocations that have run out; how many."""
    txn.execute("DELETE FROM actor_revocation WHERE expires_at < ?", (now,))
    return int(txn.rowcount)


# ---------------------------------------------------------------------------
# The daemon's in-memory list

NewRevocations = Callable[[list[Revocation]], None]


class RevocationList:
    """The revocations in force, by actor key; fed by the realm change feed."""

    def __init__(self, database: Database, clock: IReactorTime) -> None:
        self._database = database
        self._clock = clock
        self._revoked: dict[ActorKey, Revocation] = {}
        # ``<serial hex>@<realm>`` of each, the head of a token's actor id;
        # updated in place (RevokingValidator holds this very set).
        self.labels: set[str] = set()
        self._listeners: list[NewRevocations] = []
        self._after_change = RerunWhileChanged(self.reload, "reloading revocations")
        self._writes = 0  # revocations added here; a reload racing one re-reads

    def __len__(self) -> int:
        return len(self._revoked)

    def is_revoked(self, key: ActorKey) -> bool:
        """Whether the actor ``(realm, serial)`` is revoked (one dict lookup)."""
        return key in self._revoked

    def all(self) -> list[Revocation]:
        """The revocations in force (for listings)."""
        return list(self._revoked.values())

    def on_new(self, listener: NewRevocations) -> None:
        """Call ``listener(revocations)`` with the ones a reload finds new."""
        self._listeners.append(listener)

    def load_sync(self) -> None:
        """Blocking first load, for startup before the reactor runs."""
        now = int(self._clock.seconds())
        rows = self._database.run_sync(list_revocations_txn, now)
        self._replace(rows)

    def _replace(self, rows: list[Revocation]) -> None:
        self._revoked = {r.key: r for r in rows}
        self.labels.clear()
        self.labels.update(_label(r.key) for r in rows)

    def add(self, revocation: Revocation) -> bool:
        """Known here at once (the writer's own process); False if known before."""
        known = revocation.key in self._revoked
        self._writes += 1
        self._revoked[revocation.key] = revocation
        self.labels.add(_label(revocation.key))
        return not known

    async def revoke(self, revocation: Revocation) -> bool:
        """Write ``revocation`` to the store and know it here; False if known."""
        await self._database.run(add_revocation_txn, revocation)
        return self.add(revocation)

    def changed(self) -> None:
        """The realm store changed: reload (once more if it changes meanwhile)."""
        self._after_change.changed()

    async def reload(self) -> None:
        """Read the table; tell the listeners about revocations not seen before."""
        while True:
            # A revocation written here while the query ran may be missing
            # from its rows (SQLite reports no change for our own writes).
            writes = self._writes
            now = int(self._clock.seconds())
            rows = await self._database.run(list_revocations_txn, now)
            if writes == self._writes:
                break
        fresh = [r for r in rows if r.key not in self._revoked]
        self._replace(rows)
        if fresh:
            for listener in list(self._listeners):
                try:
                    listener(fresh)
                except Exception:
                    log.failure("in a revocation listener")

    async def purge(self) -> None:
        """Drop expired revocations here, and from the store when any expired."""
        now = int(self._clock.seconds())
        expired = [k for k, r in self._revoked.items() if r.expires_at < now]
        for key in expired:
            del self._revoked[key]
            self.labels.discard(_label(key))
        if expired:
            removed = await self._database.run(purge_revocations_txn, now)
            log.info("{count} expired revocations purged", count=removed)


def _label(key: ActorKey) -> str:
    return f"{key[1]:x}@{key[0]}"


class RevokingValidator:
    """A CredentialValidator that refuses the tokens of revoked actors.

    Both entry points check after the wrapped validator has accepted the
    token, so an unknown, expired or foreign token keeps its own error.
    """

    def __init__(self, inner: CredentialValidator, revoked: RevocationList) -> None:
        self.inner = inner
        self._labels = revoked.labels
        self._cached: Callable[[bytes, int, int], Claims | None] | None = getattr(
            inner, "validate_cached", None
        )
        self._cached_until: (
            Callable[[bytes, int, int], tuple[Claims, float] | None] | None
        ) = getattr(inner, "cached_until", None)

    def _check(self, claims: Claims) -> Claims:
        # One set lookup; an empty set (the usual case) is one truth test.
        labels = self._labels
        if labels and claims.actor_id.partition("/")[0] in labels:
            raise CredentialError("revoked", REVOKED_TEXT)
        return claims

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        claims = await self.inner.validate(encrypted_token, key_id, expected_realm)
        return self._check(claims)

    def validate_cached(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims | None:
        """The inner cache's answer, or None ("ask") for a revoked actor."""
        if self._cached is None:
            return None
        claims = self._cached(encrypted_token, key_id, expected_realm)
        labels = self._labels
        if claims is None or (labels and claims.actor_id.partition("/")[0] in labels):
            return None  # validate() then gives the exact error
        return claims

    def cached_until(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> tuple[Claims, float] | None:
        """The inner ``cached_until``, or None ("ask") for a revoked actor.

        Signaling keeps this answer on the session until the time it gives;
        a revocation does not wait for it: the enforcer ends the revoked
        actor's sessions (:mod:`actrix.core.revocation`), on this node at
        once and on others when their list refreshes, as for a fresh check.
        """
        if self._cached_until is None:
            return None
        found = self._cached_until(encrypted_token, key_id, expected_realm)
        labels = self._labels
        if found is None or (labels and found[0].actor_id.partition("/")[0] in labels):
            return None
        return found
