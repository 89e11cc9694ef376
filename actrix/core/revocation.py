"""Revocation ends everything: an actor's (or a realm's) sockets, relays and room peers.

:class:`Revoker` is what the admin API calls and what the change feed drives.
Revoking an actor writes a row to the realm store (so every process sharing
it, and this one after a restart, refuses the actor's tokens until they
expire; see :mod:`actrix.core.revocations`) and then, in this process, closes
the actor's signaling WebSocket (close code :data:`REVOKED_CODE`), removes it
from the directory with an ActrDown (reason ``revoked``) to its subscribers and
terminates its TURN allocations. Other processes do the same when their change
feed brings the row (within a second). Suspending a realm does it for every
actor, allocation and room peer of the realm.

The services are reached through the small protocols below; ``tap.py`` passes
the signaling service, the TURN service and the room service (any may be
absent when that service is off).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Final, Protocol

import attrs
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.actrid import actr_id_repr
from actrix.core.directory import ActorKey
from actrix.core.realms import RealmCache
from actrix.core.revocations import (
    Revocation,
    RevocationList,
    clean_reason,
)
from actrix.proto import actr_pb2

log = Logger()

REVOKED_CODE: Final = 4003  # WebSocket close: identity revoked / realm inactive
MAX_CLOSE_REASON: Final = 123  # bytes (RFC 6455 §5.5: 125 minus the code)
PURGE_INTERVAL: Final = 60.0
CHECK_INTERVAL: Final = 1.0


@attrs.frozen
class RevokeResult:
    """What one revocation or suspension ended in this process."""

    sockets_closed: int
    allocations_terminated: int
    room_peers_removed: int


class ActorSessions(Protocol):
    """Signaling: end an actor's (or a realm's) sockets and directory entries."""

    async def end_actor(self, key: ActorKey, code: int, reason: str, event: str) -> int:
        """Close the actor's socket here, drop its entry, push ActrDown(``event``);
        how many sockets were closed."""
        ...

    async def end_realm(self, realm_id: int, code: int, reason: str, event: str) -> int:
        """:meth:`end_actor` for every actor of the realm bound here."""
        ...


class RelayAllocations(Protocol):
    """TURN: terminate allocations made with an actor's (or realm's) tokens."""

    def terminate_actor(self, realm_id: int, serial: int, why: str) -> int: ...

    def terminate_realm(self, realm_id: int, why: str) -> int: ...


class RoomPeers(Protocol):
    """Rooms: the peers (members and sessions) admitted into a realm."""

    def count_realm(self, realm_id: int) -> int: ...

    def end_realm(self, realm_id: int) -> int: ...


def close_reason(prefix: str, reason: str) -> str:
    """``prefix: reason`` cut to what a WebSocket close frame can carry."""
    text = f"{prefix}: {reason}" if reason else prefix
    data = text.encode("utf-8")[:MAX_CLOSE_REASON]
    return data.decode("utf-8", "ignore")


class Revoker:
    """Revokes actors and ends suspended realms in this process (see module doc)."""

    def __init__(
        self,
        clock: IReactorTime,
        revocations: RevocationList,
        realms: RealmCache,
        lifetime: int,
        *,
        sessions: ActorSessions | None = None,
        allocations: RelayAllocations | None = None,
        rooms: RoomPeers | None = None,
    ) -> None:
        self._clock = clock
        self.revocations = revocations
        self._realms = realms
        self._lifetime = lifetime
        self.sessions = sessions
        self.allocations = allocations
        self.rooms = rooms
        self._seen: set[int] = set()  # realm ids seen usable
        self._ended: set[int] = set()  # realm ids ended while unusable
        self._last_purge = clock.seconds()
        revocations.on_new(self.enforce_new)

    # -- the admin API's entry points -------------------------------------

    async def revoke_actor(self, actr_id: actr_pb2.ActrId, reason: str) -> RevokeResult:
        """Revoke ``actr_id`` everywhere until its tokens expire.

        The row is written first (every process and a restart honour it);
        then this process's socket, directory entry and allocations end.

        Raises:
            StorageError: the realm store could not be written; nothing changed.
        """
        now = int(self._clock.seconds())
        revocation = Revocation(
            realm_id=actr_id.realm.realm_id,
            serial=actr_id.serial_number,
            actor_id=actr_id_repr(actr_id),
            reason=clean_reason(reason),
            revoked_at=now,
            expires_at=now + self._lifetime,
        )
        await self.revocations.revoke(revocation)
        return await self._end_actor(revocation)

    async def suspend_realm(self, realm_id: int, reason: str) -> RevokeResult:
        """End every actor socket, allocation and room peer of a realm.

        Called once the realm row is Suspended: the realm cache is reloaded
        first, so no new registration, allocation or join gets in meanwhile.
        """
        self._ended.add(realm_id)
        before = self.rooms.count_realm(realm_id) if self.rooms is not None else 0
        try:
            await self._realms.load()
        except Exception:
            log.failure(
                "reloading realms before suspending realm {realm}", realm=realm_id
            )
        result = await self._end_realm(
            realm_id, close_reason("realm suspended", clean_reason(reason))
        )
        return attrs.evolve(
            result, room_peers_removed=max(before, result.room_peers_removed)
        )

    # -- the change feed ----------------------------------------------------

    def enforce_new(self, revocations: list[Revocation]) -> None:
        """Revocations written elsewhere (CLI, another process) end here too."""
        for revocation in revocations:
            self._spawn(self._end_actor(revocation), "ending a revoked actor")

    def check_realms(self) -> None:
        """End the realms that became unusable (suspended, expired, removed)."""
        known = self._realms.realm_ids()
        for realm_id in known | self._seen:
            if self._realms.realm_problem(realm_id) is None:
                self._seen.add(realm_id)
                self._ended.discard(realm_id)
                continue
            self._seen.discard(realm_id)
            if realm_id in self._ended:
                continue
            self._ended.add(realm_id)
            info = self._realms.realm(realm_id)
            what = (
                "realm removed"
                if info is None
                else "realm expired"
                if info.state(self._clock.seconds()) == "expired"
                else "realm suspended"
            )
            self._spawn(self._end_realm(realm_id, what), "ending a realm")

    def timer(self) -> TimerService:
        """Realm expiry checks each second; expired revocations purged each minute."""
        return TimerService(CHECK_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.check_realms()
        now = self._clock.seconds()
        if now - self._last_purge >= PURGE_INTERVAL:
            self._last_purge = now
            self._spawn(self.revocations.purge(), "purging revocations")

    # -- enforcement --------------------------------------------------------

    async def _end_actor(self, revocation: Revocation) -> RevokeResult:
        key = revocation.key
        sockets = 0
        if self.sessions is not None:
            sockets = await self.sessions.end_actor(
                key, REVOKED_CODE, close_reason("revoked", revocation.reason), "revoked"
            )
        allocations = 0
        if self.allocations is not None:
            allocations = self.allocations.terminate_actor(
                revocation.realm_id, revocation.serial, "revoked"
            )
        result = RevokeResult(sockets, allocations, 0)
        log.info(
            "actor {actor} revoked: {sockets} sockets closed,"
            " {allocations} allocations terminated",
            actor=revocation.actor_id,
            sockets=sockets,
            allocations=allocations,
        )
        return result

    async def _end_realm(self, realm_id: int, close_text: str) -> RevokeResult:
        """Sockets close with ``close_text``; subscribers hear ``realm suspended``."""
        sockets = 0
        if self.sessions is not None:
            sockets = await self.sessions.end_realm(
                realm_id,
                REVOKED_CODE,
                close_text,
                "realm suspended",
            )
        allocations = 0
        if self.allocations is not None:
            allocations = self.allocations.terminate_realm(realm_id, "realm suspended")
        peers = self.rooms.end_realm(realm_id) if self.rooms is not None else 0
        if sockets or allocations or peers:
            log.info(
                "realm {realm} ended: {sockets} sockets closed, {allocations}"
                " allocations terminated, {peers} room peers removed",
                realm=realm_id,
                sockets=sockets,
                allocations=allocations,
                peers=peers,
            )
        return RevokeResult(sockets, allocations, peers)

    def _spawn(self, work: Coroutine[Any, Any, object], what: str) -> None:
        d = Deferred.fromCoroutine(work)
        d.addErrback(lambda f: log.failure("while {what}", f, what=what))
