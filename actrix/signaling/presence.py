"""Presence subscriptions: which actors want ActrUp/ActrDown events for a type.

The key is the exact ActrType (manufacturer, name, whether a version is present,
and its value), as signaling.md §7 specifies. Subscribers are kept by
(realm, serial) with the ActrId they subscribed as.
"""

from __future__ import annotations

from actrix.proto import actr_pb2

ActorKey = tuple[int, int]
TypeId = tuple[str, str, bool, str]


def type_id(actr_type: actr_pb2.ActrType) -> TypeId:
    return (
        actr_type.manufacturer,
        actr_type.name,
        actr_type.HasField("version"),
        actr_type.version,
    )


class Subscriptions:
    """Subscribers per exact ActrType."""

    def __init__(self) -> None:
        self._by_type: dict[TypeId, dict[ActorKey, actr_pb2.ActrId]] = {}
        self._by_actor: dict[ActorKey, set[TypeId]] = {}

    def subscribe(self, target: actr_pb2.ActrType, subscriber: actr_pb2.ActrId) -> None:
        """Add ``subscriber`` for ``target`` (idempotent)."""
        tid = type_id(target)
        key = (subscriber.realm.realm_id, subscriber.serial_number)
        copy = actr_pb2.ActrId()
        copy.CopyFrom(subscriber)
        self._by_type.setdefault(tid, {})[key] = copy
        self._by_actor.setdefault(key, set()).add(tid)

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

    def subscribers(
        self, actr_type: actr_pb2.ActrType
    ) -> list[tuple[ActorKey, actr_pb2.ActrId]]:
        members = self._by_type.get(type_id(actr_type))
        return [] if members is None else list(members.items())

    def __len__(self) -> int:
        return sum(len(m) for m in self._by_type.values())
