"""Presence: who wants ActrUp/ActrDown events for a type, and sending them.

:class:`Subscriptions` is the subscription table. Its key is the exact ActrType
(manufacturer, name, whether a version is present, and its value), as
signaling.md §7 specifies; subscribers are kept by (realm, serial) with the
ActrId they subscribed as. :class:`PresenceEvents` applies the realm and ACL
rules and pushes the events to the subscribers' sessions.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet.interfaces import IReactorTime

from actrix.core.actrid import type_key
from actrix.core.bus import DELIVER, Bus, BusMessage
from actrix.core.directory import (
    MAX_SUBSCRIPTIONS_PER_ACTOR,
    ActorDirectory,
    ActorEntry,
    ActorKey,
    TypeId,
    type_id,
)
from actrix.core.interfaces import RealmDirectory
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.sessions import Sessions


class Subscriptions:
    """Subscribers per exact ActrType."""

    def __init__(self) -> None:
        self._by_type: dict[TypeId, dict[ActorKey, actr_pb2.ActrId]] = {}
        self._by_actor: dict[ActorKey, set[TypeId]] = {}

    def subscribe(self, target: actr_pb2.ActrType, subscriber: actr_pb2.ActrId) -> bool:
        """Add ``subscriber`` for ``target`` (idempotent).

        False (and nothing changes) when the subscriber already watches
        :data:`MAX_SUBSCRIPTIONS_PER_ACTOR` other types.
        """
        tid = type_id(target)
        key = (subscriber.realm.realm_id, subscriber.serial_number)
        types = self._by_actor.get(key)
        if (
            types is not None
            and tid not in types
            and len(types) >= MAX_SUBSCRIPTIONS_PER_ACTOR
        ):
            return False
        copy = actr_pb2.ActrId()
        copy.CopyFrom(subscriber)
        self._by_type.setdefault(tid, {})[key] = copy
        self._by_actor.setdefault(key, set()).add(tid)
        return True

    def unsubscribe(self, target: actr_pb2.ActrType, subscriber: ActorKey) -> bool:
        """Remove one subscription; False if there was none."""
        tid = type_id(target)
        members = self._by_type.get(tid)
        if members is None or subscriber not in members:
            return False
        del members[subscriber]
        if not members:
            del self._by_type[tid]
        types = self._by_actor.get(subscriber)
        if types is not None:
            types.discard(tid)
            if not types:
                del self._by_actor[subscriber]
        return True

    def forget(self, subscriber: ActorKey) -> None:
        """Drop every subscription of an actor that has left."""
        for tid in self._by_actor.pop(subscriber, set()):
            members = self._by_type.get(tid)
            if members is not None:
                members.pop(subscriber, None)
                if not members:
                    del self._by_type[tid]

    def actors(self) -> Iterator[ActorKey]:
        """Every actor holding at least one subscription (a snapshot)."""
        return iter(list(self._by_actor))

    def subscribers(
        self, actr_type: actr_pb2.ActrType
    ) -> list[tuple[ActorKey, actr_pb2.ActrId]]:
        members = self._by_type.get(type_id(actr_type))
        return [] if members is None else list(members.items())

    def __len__(self) -> int:
        return sum(len(m) for m in self._by_type.values())


class PresenceEvents:
    """Pushes ActrUp/ActrDown events (signaling.md §5.1 step 5, §7).

    An event for actor A reaches a subscriber S of A's exact type only when S
    is in A's realm, the ACL allows S's type to reach A's type, and S has a
    live session. The down event (``actr_down_event``, our addition) carries
    the reason: ``disconnected``, ``unregistered`` or ``expired``.
    """

    def __init__(
        self,
        clock: IReactorTime,
        realms: RealmDirectory,
        sessions: Sessions,
        directory: ActorDirectory,
        bus: Bus | None = None,
    ) -> None:
        self._clock = clock
        self._realms = realms
        self._sessions = sessions
        self._directory = directory
        self._bus = bus

    async def set_online(
        self,
        key: ActorKey,
        online: bool,
        reason: str,
        now: float | None = None,
        session: int | None = None,
    ) -> ActorEntry | None:
        """Write an actor's online flag and announce a change (no-op if equal).

        With ``now`` the heartbeat is refreshed as well, with ``session`` the
        entry names that session of this process. Returns the new entry when
        the flag changed.
        """
        entry = await self._directory.set_online(key, online, now, session)
        if entry is not None:
            await self.notify(entry.actr_id, up=online, reason=reason)
        return entry

    async def notify(self, actr_id: actr_pb2.ActrId, up: bool, reason: str) -> int:
        """Push the event to every subscriber allowed to see it; how many got it."""
        subscribers = await self._directory.subscribers(actr_id.type)
        if not subscribers:
            return 0
        realm_id = actr_id.realm.realm_id
        to_key = type_key(actr_id.type)
        now = self._clock.seconds()
        sent = 0
        for subscriber in subscribers:
            key = subscriber.key
            if key[0] != realm_id:
                continue
            if not self._realms.acl_allowed(
                realm_id, type_key(subscriber.actr_id.type), to_key
            ):
                continue
            session = self._sessions.bound(key)
            if session is None and (self._bus is None or not self._bus.shared):
                continue
            push, body = m.to_actor(now, subscriber.actr_id)
            if up:
                body.actr_up_event.actor_id.CopyFrom(actr_id)
            else:
                event = body.actr_down_event
                event.actor_id.CopyFrom(actr_id)
                event.reason = reason
            if session is not None:
                if self._sessions.send(session, push):
                    sent += 1
            elif await self._send_remote(key, push):
                sent += 1
        return sent

    async def _send_remote(
        self, key: ActorKey, push: signaling_pb2.SignalingEnvelope
    ) -> bool:
        """Hand an event to the node holding subscriber ``key``'s socket."""
        bus = self._bus
        if bus is None:
            return False
        entry = await self._directory.lookup(key)
        if entry is None or not entry.online or entry.node == bus.node_id:
            return False
        message = BusMessage(
            DELIVER, key, entry.session, push.SerializeToString(), origin=bus.node_id
        )
        return await bus.send(entry.node, message)


__all__ = [
    "MAX_SUBSCRIPTIONS_PER_ACTOR",
    "PresenceEvents",
    "Subscriptions",
    "TypeId",
    "type_id",
]
