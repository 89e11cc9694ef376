"""The registry's write-behind to ``signaling_cache.db`` and its restore (§4, §10).

Flows change the in-memory registry and spec index and record each change
here; :meth:`RegistryPersistence.flush` writes the buffered changes in one
transaction (a 1 s timer and shutdown call it). At startup every unexpired
row is loaded offline; an actor that pings or reconnects without an in-memory
entry gets its row back from SQLite on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.actrid import type_key
from actrix.core.directory import ActorKey
from actrix.proto import actr_pb2
from actrix.signaling import messages as m
from actrix.signaling.registry import ActorRegistry, SpecIndex, spec_key
from actrix.signaling.routing import RouteEntry
from actrix.signaling.store import (
    REGISTRY_TTL,
    RegistryRow,
    SignalingStore,
    SpecRow,
    WriteBehind,
    row_key,
)

log = Logger()


class RegistryPersistence:
    """Buffers registry and spec changes and writes them behind.

    Entries it brings back from SQLite are offline; ``went_offline`` hears of
    each one, so the reconnect window applies to them too.
    """

    def __init__(
        self,
        clock: IReactorTime,
        store: SignalingStore | None,
        registry: ActorRegistry,
        specs: SpecIndex,
        went_offline: Callable[[ActorKey], None] = lambda key: None,
    ) -> None:
        self._clock = clock
        self._went_offline = went_offline
        self._store = store
        self._registry = registry
        self._specs = specs
        self.pending = WriteBehind()
        self._flushing: Deferred[None] | None = None

    # ------------------------------------------------------------------
    # Recording changes

    def save(self, entry: RouteEntry) -> None:
        """Write (insert or replace) an entry's row on the next flush."""
        key = m.actor_key(entry.actr_id)
        self.pending.save(
            RegistryRow(
                actor_key=row_key(*key),
                realm_id=key[0],
                actr_id=entry.actr_id.SerializePartialToString(),
                service_name=entry.service_name,
                service_spec=(
                    None
                    if entry.service_spec is None
                    else entry.service_spec.SerializePartialToString()
                ),
                ws_address=entry.ws_address,
                last_heartbeat=entry.last_heartbeat,
                expires_at=int(entry.last_heartbeat) + REGISTRY_TTL,
            )
        )

    def heartbeat(self, key: ActorKey, now: float) -> None:
        """Refresh a row's heartbeat and 12 h TTL."""
        self.pending.heartbeat(row_key(*key), now, int(now) + REGISTRY_TTL)

    def delete(self, key: ActorKey) -> None:
        self.pending.delete(row_key(*key))

    def save_spec(
        self, actr_type: actr_pb2.ActrType, spec: actr_pb2.ServiceSpec, now: float
    ) -> None:
        """Index the spec an actor registered and upsert it in the spec store.

        Specs the index drops to stay within its bounds leave the store too.
        """
        self.pending.save_spec(self._specs.put(actr_type, spec, now))
        for key in self._specs.trim():
            self.pending.delete_spec(key)

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        """Spec store lookup for route negotiation; extends the spec's TTL."""
        now = self._clock.seconds()
        spec, renewed = self._specs.lookup(actr_type, fingerprint, now)
        if renewed is not None:
            self.pending.touch_spec(spec_key(actr_type, fingerprint), renewed)
        return spec

    # ------------------------------------------------------------------
    # Restoring

    def load(self, rows: Iterable[RegistryRow], specs: Iterable[SpecRow] = ()) -> None:
        """Load persisted entries at startup; they stay offline until reconnected."""
        self._specs.load(specs)
        for row in rows:
            entry = entry_from_row(row)
            if entry is not None:
                self._registry.add(attrs.evolve(entry, online=False))
                self._went_offline(m.actor_key(entry.actr_id))

    async def restore(self, key: ActorKey) -> RouteEntry | None:
        """Bring one actor's unexpired row back into memory (offline)."""
        if self._store is None:
            return None
        try:
            row = await self._store.load_actor(
                row_key(*key), int(self._clock.seconds())
            )
        except Exception:
            log.failure("restoring a registry entry")
            return None
        if row is None:
            return None
        existing = self._registry.get(key)
        if existing is not None:
            return existing
        entry = entry_from_row(row)
        if entry is None:
            return None
        entry = attrs.evolve(entry, online=False, last_heartbeat=self._clock.seconds())
        self._registry.add(entry)
        self._went_offline(key)
        return entry

    # ------------------------------------------------------------------
    # Writing and sweeping

    async def flush(self) -> None:
        """Write the pending registry and spec changes (one transaction)."""
        while self._flushing is not None:
            await self._flushing
        if not self.pending or self._store is None:
            return
        batch, self.pending = self.pending, WriteBehind()
        self._flushing = Deferred()
        try:
            await self._store.flush(batch)
        except Exception:
            log.failure("writing the registry cache")
        finally:
            d, self._flushing = self._flushing, None
            d.callback(None)

    async def sweep(self) -> None:
        """Delete expired SQLite rows and in-memory specs."""
        now = self._clock.seconds()
        self._specs.sweep(now)
        if self._store is not None:
            rows, specs = await self._store.sweep(int(now))
            if rows or specs:
                log.info(
                    "expired {rows} registry rows and {specs} specs",
                    rows=rows,
                    specs=specs,
                )


def entry_from_row(row: RegistryRow) -> RouteEntry | None:
    """The registry entry of a stored row; None (logged) if it is unreadable."""
    try:
        actr_id = actr_pb2.ActrId()
        actr_id.ParseFromString(row.actr_id)
        spec: actr_pb2.ServiceSpec | None = None
        if row.service_spec is not None:
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(row.service_spec)
    except Exception:
        log.warn("unreadable registry row {key} skipped", key=row.actor_key)
        return None
    return RouteEntry(
        actr_id=actr_id,
        type_key=type_key(actr_id.type),
        service_name=row.service_name,
        service_spec=spec,
        ws_address=row.ws_address,
        last_heartbeat=row.last_heartbeat,
    )
