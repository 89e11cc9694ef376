"""Realms and the actor ACL: the ``actrix.db`` store, shared by daemon and CLI.

The daemon serves every lookup from memory (:class:`RealmCache`) and reloads when
another connection (the CLI, another node) has committed, which it notices twice
a second through SQLite's ``PRAGMA data_version`` or, in PostgreSQL, a change
counter that triggers bump; there a ``NOTIFY`` from the same triggers (see
:class:`actrix.core.pg.ChangeFeed`) makes every node reload at once. The
``*_txn`` functions are plain blocking code so the CLI and the unit tests call
them on a connection directly.

ACL (a deviation from signaling.md §5.1 step 2 and §7, see the README's security
notes): one row per ``(realm, from_type, to_type)``. A row keeps what an operator
set (``actrix acl add``) apart from what the newest registration of ``to_type``
declared; each registration of a type that carries an ACL replaces that type's
declared rules, and the decision is DENY when either source denies. No row
still means deny.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.interfaces import RealmInfo
from actrix.core.storage import (
    Database,
    MigrationSet,
    RerunWhileChanged,
    StorageClosed,
    StorageUnavailable,
    StoreSpec,
)

log = Logger()

REALMS_DB: Final = "actrix.db"
MIGRATIONS: Final = MigrationSet("actrix.core")
STORE: Final = StoreSpec(REALMS_DB, "realms", MIGRATIONS)
# Twice a second, so a CLI change (a revocation, a suspension) is enforced
# by every process within a second.
REFRESH_INTERVAL: Final = 0.5

STATUS_ACTIVE: Final = "Normal"
STATUS_SUSPENDED: Final = "Suspended"


class RealmError(Exception):
    """A realm or ACL change cannot be made (duplicate id, unknown realm...)."""


@attrs.frozen
class AclRow:
    """One ``actoracl`` row: the decision and the two sources it comes from."""

    rowid: int
    realm_id: int
    from_type: str
    to_type: str
    allow: bool
    operator_allow: bool | None = None  # set by ``actrix acl add``
    declared_allow: bool | None = None  # declared by the newest registration


def realms_path(sqlite_path: Path) -> Path:
    """Where the realm database of a daemon lives."""
    return sqlite_path / REALMS_DB


# ---------------------------------------------------------------------------
# SQL (runs on the database thread, or in the CLI)


def _row_to_realm(row: Sequence[Any]) -> RealmInfo:
    return RealmInfo(
        realm_id=int(row[0]),
        name=str(row[1]),
        status=str(row[2]),
        expires_at=None if row[3] is None else int(row[3]),
        created_at=int(row[4]),
        updated_at=int(row[5]),
    )


_REALM_COLUMNS = "realm_id, name, status, expires_at, created_at, updated_at"


def list_realms_txn(txn: Any) -> list[RealmInfo]:
    txn.execute(f"SELECT {_REALM_COLUMNS} FROM realm ORDER BY realm_id")  # noqa: S608
    return [_row_to_realm(r) for r in txn.fetchall()]


def get_realm_txn(txn: Any, realm_id: int) -> RealmInfo | None:
    txn.execute(
        f"SELECT {_REALM_COLUMNS} FROM realm WHERE realm_id = ?",  # noqa: S608
        (realm_id,),
    )
    row = txn.fetchone()
    return None if row is None else _row_to_realm(row)


def add_realm_txn(
    txn: Any,
    realm_id: int | None,
    name: str,
    expires_at: int | None,
    now: int,
) -> RealmInfo:
    """Insert a realm; ``realm_id=None`` takes the next free id (from 1)."""
    if realm_id is None:
        txn.execute("SELECT COALESCE(MAX(realm_id), 0) + 1 FROM realm")
        realm_id = int(txn.fetchone()[0])
    if get_realm_txn(txn, realm_id) is not None:
        raise RealmError(f"realm {realm_id} already exists")
    txn.execute(
        "INSERT INTO realm (realm_id, name, status, expires_at, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (realm_id, name, STATUS_ACTIVE, expires_at, now, now),
    )
    return RealmInfo(realm_id, name, STATUS_ACTIVE, expires_at, now, now)


def set_realm_status_txn(txn: Any, realm_id: int, status: str, now: int) -> None:
    txn.execute(
        "UPDATE realm SET status = ?, updated_at = ?, version = version + 1"
        " WHERE realm_id = ?",
        (status, now, realm_id),
    )
    if txn.rowcount == 0:
        raise RealmError(f"realm {realm_id} not found")


def remove_realm_txn(txn: Any, realm_id: int) -> None:
    txn.execute("DELETE FROM realm WHERE realm_id = ?", (realm_id,))
    if txn.rowcount == 0:
        raise RealmError(f"realm {realm_id} not found")
    txn.execute("DELETE FROM actoracl WHERE realm_id = ?", (realm_id,))


_ACL_COLUMNS = (
    "rowid, realm_id, from_type, to_type, access, operator_access, actor_access"
)
# The decision of a row: DENY if either source denies (a NULL source is silent).
_DECIDE = (
    "CASE WHEN COALESCE(operator_access, 1) = 0"
    " OR COALESCE(actor_access, 1) = 0 THEN 0 ELSE 1 END"
)


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _row_to_acl(r: Sequence[Any]) -> AclRow:
    return AclRow(
        int(r[0]),
        int(r[1]),
        str(r[2]),
        str(r[3]),
        bool(r[4]),
        _optional_bool(r[5]),
        _optional_bool(r[6]),
    )


def list_acl_txn(txn: Any, realm_id: int | None = None) -> list[AclRow]:
    sql = f"SELECT {_ACL_COLUMNS} FROM actoracl"  # noqa: S608
    args: tuple[int, ...] = ()
    if realm_id is not None:
        sql += " WHERE realm_id = ?"
        args = (realm_id,)
    txn.execute(sql + " ORDER BY rowid", args)
    return [_row_to_acl(r) for r in txn.fetchall()]


def get_acl_txn(txn: Any, rowid: int) -> AclRow | None:
    txn.execute(
        f"SELECT {_ACL_COLUMNS} FROM actoracl WHERE rowid = ?",  # noqa: S608
        (rowid,),
    )
    row = txn.fetchone()
    return None if row is None else _row_to_acl(row)


def add_acl_txn(
    txn: Any, realm_id: int, from_type: str, to_type: str, allow: bool
) -> int:
    """Set the operator's rule for a triple; the row id.

    One row per triple: a second ``add`` for it changes the existing row. An
    explicit DENY beats ALLOW: a DENY replaces an operator ALLOW, but an ALLOW
    does not lift an operator DENY (remove that rule first). A registration's
    declared DENY for the triple still wins over an operator ALLOW.

    Raises:
        RealmError: the operator already denies this triple and ``allow`` is set.
    """
    txn.execute(
        "SELECT rowid, operator_access FROM actoracl"
        " WHERE realm_id = ? AND from_type = ? AND to_type = ?",
        (realm_id, from_type, to_type),
    )
    row = txn.fetchone()
    if row is None:
        txn.execute(
            "INSERT INTO actoracl"
            " (realm_id, from_type, to_type, access, operator_access)"
            " VALUES (?, ?, ?, ?, ?) RETURNING rowid",
            (realm_id, from_type, to_type, int(allow), int(allow)),
        )
        return int(txn.fetchone()[0])
    rowid = int(row[0])
    if allow and row[1] is not None and not row[1]:
        raise RealmError(
            f"ACL rule {rowid} denies {from_type} -> {to_type} in realm"
            f" {realm_id}; a deny is not lifted by an allow (remove it first)"
        )
    txn.execute(
        "UPDATE actoracl SET operator_access = ? WHERE rowid = ?", (int(allow), rowid)
    )
    # SET expressions see the old row, so the decision is its own statement.
    txn.execute(
        f"UPDATE actoracl SET access = {_DECIDE} WHERE rowid = ?",  # noqa: S608
        (rowid,),
    )
    return rowid


def replace_declared_acl_txn(
    txn: Any, realm_id: int, to_type: str, rules: Mapping[str, bool]
) -> list[AclRow]:
    """Make ``rules`` (from type key -> allow) what ``to_type`` declares.

    The previous registration's declarations toward ``to_type`` go (rows that
    only held those are deleted); operator rules stay. Returns every row
    toward ``to_type`` in the realm afterwards.
    """
    txn.execute(
        "DELETE FROM actoracl WHERE realm_id = ? AND to_type = ?"
        " AND operator_access IS NULL",
        (realm_id, to_type),
    )
    txn.execute(
        "UPDATE actoracl SET actor_access = NULL"
        " WHERE realm_id = ? AND to_type = ? AND actor_access IS NOT NULL",
        (realm_id, to_type),
    )
    txn.executemany(
        "INSERT INTO actoracl (realm_id, from_type, to_type, access, actor_access)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (realm_id, from_type, to_type)"
        " DO UPDATE SET actor_access = excluded.actor_access",
        [
            (realm_id, from_type, to_type, int(allow), int(allow))
            for from_type, allow in rules.items()
        ],
    )
    txn.execute(
        f"UPDATE actoracl SET access = {_DECIDE}"  # noqa: S608
        " WHERE realm_id = ? AND to_type = ?",
        (realm_id, to_type),
    )
    txn.execute(
        f"SELECT {_ACL_COLUMNS} FROM actoracl"  # noqa: S608
        " WHERE realm_id = ? AND to_type = ? ORDER BY rowid",
        (realm_id, to_type),
    )
    return [_row_to_acl(r) for r in txn.fetchall()]


def remove_acl_txn(txn: Any, rowid: int) -> None:
    txn.execute("DELETE FROM actoracl WHERE rowid = ?", (rowid,))
    if txn.rowcount == 0:
        raise RealmError(f"ACL rule {rowid} not found")


# Room secrets (rooms.md §4.2)


@attrs.frozen(repr=False)
class RoomSecret:
    """One generation of a realm's room secret; ``valid_until`` None = current."""

    realm_id: int
    kid: int
    secret: bytes
    valid_until: int | None

    def __repr__(self) -> str:
        return f"RoomSecret(realm_id={self.realm_id}, kid={self.kid})"


def list_room_secrets_txn(txn: Any) -> list[RoomSecret]:
    txn.execute(
        "SELECT realm_id, kid, secret, valid_until FROM room_secret"
        " ORDER BY realm_id, kid"
    )
    return [
        RoomSecret(
            int(r[0]), int(r[1]), bytes(r[2]), None if r[3] is None else int(r[3])
        )
        for r in txn.fetchall()
    ]


def current_room_secret_txn(txn: Any, realm_id: int, now: int) -> RoomSecret:
    """The realm's current room secret, created (kid 1) on first use.

    Raises:
        RealmError: the realm does not exist.
    """
    if get_realm_txn(txn, realm_id) is None:
        raise RealmError(f"realm {realm_id} not found")
    txn.execute(
        "SELECT kid, secret FROM room_secret"
        " WHERE realm_id = ? AND valid_until IS NULL",
        (realm_id,),
    )
    row = txn.fetchone()
    if row is not None:
        return RoomSecret(realm_id, int(row[0]), bytes(row[1]), None)
    txn.execute(
        "SELECT COALESCE(MAX(kid), 0) + 1 FROM room_secret WHERE realm_id = ?",
        (realm_id,),
    )
    kid = int(txn.fetchone()[0])
    secret = secrets.token_bytes(32)
    txn.execute(
        "INSERT INTO room_secret (realm_id, kid, secret, created_at, valid_until)"
        " VALUES (?, ?, ?, ?, NULL)",
        (realm_id, kid, secret, now),
    )
    return RoomSecret(realm_id, kid, secret, None)


def rotate_room_secret_txn(
    txn: Any, realm_id: int, now: int, overlap: int | None
) -> RoomSecret:
    """Make secret ``kid + 1`` current; the old one stays valid ``overlap`` s
    (None: dropped at once). Older generations are deleted."""
    old = current_room_secret_txn(txn, realm_id, now)
    txn.execute(
        "DELETE FROM room_secret WHERE realm_id = ? AND kid < ?", (realm_id, old.kid)
    )
    if overlap is None:
        txn.execute("DELETE FROM room_secret WHERE realm_id = ?", (realm_id,))
    else:
        txn.execute(
            "UPDATE room_secret SET valid_until = ? WHERE realm_id = ? AND kid = ?",
            (now + overlap, realm_id, old.kid),
        )
    secret = secrets.token_bytes(32)
    txn.execute(
        "INSERT INTO room_secret (realm_id, kid, secret, created_at, valid_until)"
        " VALUES (?, ?, ?, ?, NULL)",
        (realm_id, old.kid + 1, secret, now),
    )
    return RoomSecret(realm_id, old.kid + 1, secret, None)


def _data_version_txn(txn: Any) -> int:
    txn.execute("PRAGMA data_version")
    return int(txn.fetchone()[0])


def _change_counter_txn(txn: Any) -> int:
    txn.execute("SELECT version FROM realm_changes WHERE id = 1")
    return int(txn.fetchone()[0])


_Snapshot = tuple[int, list[RealmInfo], list[AclRow], list[RoomSecret]]


def _sqlite_snapshot_txn(txn: Any) -> _Snapshot:
    return (
        _data_version_txn(txn),
        list_realms_txn(txn),
        list_acl_txn(txn),
        list_room_secrets_txn(txn),
    )


def _pg_snapshot_txn(txn: Any) -> _Snapshot:
    return (
        _change_counter_txn(txn),
        list_realms_txn(txn),
        list_acl_txn(txn),
        list_room_secrets_txn(txn),
    )


# ---------------------------------------------------------------------------
# The daemon's in-memory directory


def realm_problem(info: RealmInfo | None, realm_id: int, now: float) -> str | None:
    """signaling.md §4.1 failure text for a realm, or None when usable."""
    if info is None:
        return f"Realm {realm_id} not found"
    if info.expires_at is not None and now > info.expires_at:
        return f"Realm {realm_id} has expired"
    if info.status in (STATUS_SUSPENDED, "Terminated"):
        return f"Realm {realm_id} is not in Normal status (current: {info.status})"
    return None


class RealmCache:
    """:class:`~actrix.core.interfaces.RealmDirectory` over ``actrix.db``.

    ACL decisions are one flat dict (one lookup per check, on the relay path),
    with an index of the callers per target so that a registration replaces
    its type's entries without a scan. Writes
    made through this cache update memory at once (SQLite's ``data_version``
    only reports other connections' commits); a reload that read its snapshot
    before such a write reads again.
    """

    def __init__(self, database: Database, clock: IReactorTime) -> None:
        self._database = database
        self._clock = clock
        if database.dialect == "postgresql":
            self._version_txn, self._snapshot_txn = (
                _change_counter_txn,
                _pg_snapshot_txn,
            )
        else:
            self._version_txn, self._snapshot_txn = (
                _data_version_txn,
                _sqlite_snapshot_txn,
            )
        self._after_change = RerunWhileChanged(
            self.refresh, "refreshing realms after a change"
        )
        self._unavailable = False
        self._realms: dict[int, RealmInfo] = {}
        self._acl: dict[tuple[int, str, str], bool] = {}
        self._callers: dict[tuple[int, str], set[str]] = {}
        self._declared: dict[tuple[int, str], dict[str, bool]] = {}
        self._version: int | None = None
        self._room_secrets: dict[tuple[int, int], RoomSecret] = {}
        self._listeners: list[Callable[[], None]] = []
        self._writes = 0

    async def load(self) -> None:
        """Read every realm, ACL row and room secret into memory."""
        while True:
            writes = self._writes
            snapshot = await self._database.run(self._snapshot_txn)
            if writes == self._writes:
                break
        self._apply(*snapshot)

    def load_sync(self) -> None:
        """Blocking first load, for startup before the reactor runs."""
        _, realms, acl, room_secrets = self._database.run_sync(self._snapshot_txn)
        self._apply(-1, realms, acl, room_secrets)

    def _apply(
        self,
        version: int,
        realms: list[RealmInfo],
        acl: list[AclRow],
        room_secrets: list[RoomSecret],
    ) -> None:
        self._version = version
        self._room_secrets = {(r.realm_id, r.kid): r for r in room_secrets}
        self._realms = {r.realm_id: r for r in realms}
        table: dict[tuple[int, str, str], bool] = {}
        callers: dict[tuple[int, str], set[str]] = {}
        declared: dict[tuple[int, str], dict[str, bool]] = {}
        for row in acl:
            key = (row.realm_id, row.from_type, row.to_type)
            # An explicit DENY beats ALLOW, whatever the row order (the unique
            # index keeps one row per triple; this holds even without it).
            table[key] = table.get(key, True) and row.allow
            target = (row.realm_id, row.to_type)
            callers.setdefault(target, set()).add(row.from_type)
            if row.declared_allow is not None:
                declared.setdefault(target, {})[row.from_type] = row.declared_allow
        self._acl = table
        self._callers = callers
        self._declared = declared
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.failure("in a realm change listener")

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every (re)load of the realm data."""
        self._listeners.append(listener)

    async def refresh(self) -> None:
        """Reload if another connection has committed since the last load."""
        version = await self._database.run(self._version_txn)
        if version != self._version:
            await self.load()

    def changed(self) -> None:
        """Another node announced a change (NOTIFY): refresh now.

        Announcements arriving during a refresh cause one more refresh after
        it, so the last change is never missed. Errors are logged (the 1 s
        poll retries an unreachable store and reports the outage once).
        """
        self._after_change.changed()

    def timer(self) -> TimerService:
        """A TimerService that keeps the cache fresh; errors are logged."""
        return TimerService(REFRESH_INTERVAL, self._tick)

    def _tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._poll())

    async def _poll(self) -> None:
        try:
            await self.refresh()
        except StorageClosed:
            return
        except StorageUnavailable as e:
            # Lookups go on from memory; said once per outage, not every second.
            if not self._unavailable:
                log.warn("realms: {error}; serving the last snapshot", error=e)
            self._unavailable = True
            return
        except Exception:
            log.failure("refreshing realms")
            return
        if self._unavailable:
            log.info("realms: database reachable again")
        self._unavailable = False

    # RealmDirectory

    def realm(self, realm_id: int) -> RealmInfo | None:
        return self._realms.get(realm_id)

    def realm_ids(self) -> set[int]:
        return set(self._realms)

    def realm_problem(self, realm_id: int) -> str | None:
        return realm_problem(
            self._realms.get(realm_id), realm_id, self._clock.seconds()
        )

    def room_secret(self, realm_id: int, kid: int) -> bytes | None:
        """Secret ``kid`` of the realm if it is valid now (§4.3 row 3)."""
        entry = self._room_secrets.get((realm_id, kid))
        if entry is None:
            return None
        if entry.valid_until is not None and self._clock.seconds() >= entry.valid_until:
            return None
        return entry.secret

    async def current_room_secret(self, realm_id: int) -> RoomSecret:
        """The realm's current room secret, created on first use.

        Raises:
            RealmError: the realm does not exist.
        """
        now = int(self._clock.seconds())
        found = await self._database.run(current_room_secret_txn, realm_id, now)
        self._room_secrets[(realm_id, found.kid)] = found
        return found

    def acl_allowed(self, realm_id: int, from_type: str, to_type: str) -> bool:
        return self._acl.get((realm_id, from_type, to_type), False)

    # AclRegistry

    async def replace_acl(
        self, realm_id: int, to_type: str, rules: Mapping[str, bool]
    ) -> None:
        target = (realm_id, to_type)
        if self._declared.get(target, {}) == rules:
            return  # the common re-registration: nothing to write
        rows = await self._database.run(
            replace_declared_acl_txn, realm_id, to_type, dict(rules)
        )
        self._writes += 1
        for from_type in self._callers.pop(target, ()):
            self._acl.pop((realm_id, from_type, to_type), None)
        for row in rows:
            self._acl[(realm_id, row.from_type, to_type)] = row.allow
        self._callers[target] = {row.from_type for row in rows}
        self._declared[target] = {
            row.from_type: row.declared_allow
            for row in rows
            if row.declared_allow is not None
        }
