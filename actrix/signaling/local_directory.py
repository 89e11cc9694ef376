"""``LocalDirectory``: the embedded :class:`~actrix.core.directory.ActorDirectory`.

The registry lives in this process's memory (:class:`.registry.ActorRegistry`,
:class:`.registry.SpecIndex`, :class:`.presence.Subscriptions`) and is written
behind to ``signaling_cache.db`` by :class:`.persistence.RegistryPersistence`.
Nothing here touches the network, so every ``async`` method completes before
it returns: a flow that awaits one runs on without yielding to the reactor,
exactly as it did when it called the registry directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from actrix.core.directory import (
    ActorEntry,
    ActorKey,
    Heartbeat,
    Location,
    Subscriber,
)
from actrix.proto import actr_pb2
from actrix.signaling.persistence import RegistryPersistence
from actrix.signaling.presence import Subscriptions
from actrix.signaling.registry import ActorRegistry, SpecIndex
from actrix.signaling.store import RegistryRow, SignalingStore, SpecRow, WriteBehind

LOCAL_NODE = "local"


class LocalDirectory:
    """Registered actors in memory with a SQLite write-behind (one process)."""

    def __init__(
        self,
        clock: IReactorTime,
        store: SignalingStore | None,
        node_id: str = LOCAL_NODE,
    ) -> None:
        self._clock = clock
        self._node_id = node_id
        self._registry = ActorRegistry()
        self._specs = SpecIndex()
        self._subscriptions = Subscriptions()
        self._restored: Callable[[ActorKey], None] = lambda key: None
        self._persistence = RegistryPersistence(
            clock, store, self._registry, self._specs, self._went_offline
        )

    def _went_offline(self, key: ActorKey) -> None:
        self._restored(key)

    # The write-behind buffer (tests swap it).

    @property
    def pending(self) -> WriteBehind:
        return self._persistence.pending

    @pending.setter
    def pending(self, pending: WriteBehind) -> None:
        self._persistence.pending = pending

    def load(self, rows: Iterable[RegistryRow], specs: Iterable[SpecRow] = ()) -> None:
        """Load persisted entries at startup; they stay offline until reconnected."""
        self._persistence.load(rows, specs)

    # -- memory only ------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def shared(self) -> bool:
        return False

    @property
    def available(self) -> bool:
        """Always: memory and a local store."""
        return True

    def released(self, key: ActorKey) -> None:
        """No other process can take an actor over."""

    async def beat(self, now: float) -> list[ActorEntry]:
        """No other processes to watch."""
        return []

    def cached(self, key: ActorKey) -> ActorEntry | None:
        return self._registry.get(key)

    def online_by_realm(self) -> dict[int, int]:
        return self._registry.online_by_realm()

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        return self._persistence.client_spec(actr_type, fingerprint)

    def subscription_count(self) -> int:
        return len(self._subscriptions)

    def on_restored(self, callback: Callable[[ActorKey], None]) -> None:
        self._restored = callback

    # -- writes -----------------------------------------------------------

    async def register(self, entry: ActorEntry) -> None:
        entry = attrs.evolve(entry, node=self._node_id)
        self._registry.add(entry)
        self._persistence.save(entry)
        if entry.service_spec is not None:
            self._persistence.save_spec(
                entry.actr_id.type, entry.service_spec, entry.last_heartbeat
            )

    async def heartbeat(
        self, key: ActorKey, beat: Heartbeat, now: float
    ) -> ActorEntry | None:
        entry = self._registry.get(key)
        if entry is None:
            return None
        entry = beat.applied(entry, now)
        self._registry.add(entry)
        self._persistence.heartbeat(key, now)
        return entry

    async def set_online(
        self,
        key: ActorKey,
        online: bool,
        now: float | None = None,
        session: int | None = None,
    ) -> ActorEntry | None:
        entry = self._registry.get(key)
        if entry is None:
            return None
        changed = entry.online != online
        if not changed and now is None and session is None:
            return None
        entry = attrs.evolve(
            entry,
            online=online,
            last_heartbeat=entry.last_heartbeat if now is None else now,
            node=self._node_id if session is not None else entry.node,
            session=entry.session if session is None else session,
        )
        self._registry.add(entry)
        return entry if changed else None

    async def fetch_spec(self, actr_type: actr_pb2.ActrType, fingerprint: str) -> None:
        """The spec index is all in memory already."""

    async def remove(self, key: ActorKey) -> ActorEntry | None:
        entry = self._registry.remove(key)
        self._persistence.delete(key)
        return entry

    async def expire(self, now: float, timeout: float) -> list[ActorEntry]:
        expired = self._registry.expired(now, timeout)
        for entry in expired:
            self._registry.remove(entry.key)
        return expired

    # -- reads ------------------------------------------------------------

    async def lookup(self, key: ActorKey) -> ActorEntry | None:
        entry = self._registry.get(key)
        if entry is None:
            entry = await self._persistence.restore(key)
        return entry

    async def locate(self, key: ActorKey) -> Location | None:
        entry = await self.lookup(key)
        return None if entry is None else Location.of(entry)

    def location_now(self, key: ActorKey) -> Location | None:
        entry = self._registry.get(key)
        return None if entry is None else Location.of(entry)

    async def in_realm(self, realm_id: int) -> Sequence[ActorEntry]:
        return list(self._registry.in_realm(realm_id))

    async def of_type(
        self, realm_id: int, manufacturer: str, name: str
    ) -> Sequence[ActorEntry]:
        return self._registry.of_type(realm_id, manufacturer, name)

    # -- presence subscriptions -------------------------------------------

    async def subscribe(
        self, target: actr_pb2.ActrType, subscriber: actr_pb2.ActrId
    ) -> bool:
        return self._subscriptions.subscribe(target, subscriber)

    async def unsubscribe(
        self, target: actr_pb2.ActrType, subscriber: ActorKey
    ) -> bool:
        return self._subscriptions.unsubscribe(target, subscriber)

    async def forget_subscriptions(self, subscriber: ActorKey) -> None:
        self._subscriptions.forget(subscriber)

    async def subscribers(self, actr_type: actr_pb2.ActrType) -> list[Subscriber]:
        return [
            Subscriber(key, actr_id)
            for key, actr_id in self._subscriptions.subscribers(actr_type)
        ]

    async def subscribed_actors(self) -> list[ActorKey]:
        return list(self._subscriptions.actors())

    # -- upkeep -----------------------------------------------------------

    async def flush(self) -> None:
        await self._persistence.flush()

    async def sweep(self) -> None:
        await self._persistence.sweep()
