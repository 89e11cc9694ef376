"""The in-memory actor registry and the in-memory index of the proto spec store.

:class:`ActorRegistry` is the one narrow class through which the service reads
and changes registered actors (a Redis-backed one can replace it later). Its
entries are :class:`~actrix.signaling.routing.RouteEntry` value objects, mutated
in place by heartbeats. :class:`SpecIndex` answers the synchronous client-spec
lookups of route negotiation from memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from actrix.core.actrid import normalize_version
from actrix.proto import actr_pb2
from actrix.signaling.routing import RouteEntry
from actrix.signaling.store import SPEC_TTL, SpecKey, SpecRow

ActorKey = tuple[int, int]  # (realm_id, serial)
_TypeBucket = tuple[int, str, str]  # (realm_id, manufacturer, name)

# A lookup extends a spec's life; writing that back is skipped unless it moves
# the expiry by at least this much.
SPEC_TOUCH_STEP = 3600


def entry_key(entry: RouteEntry) -> ActorKey:
    return (entry.actr_id.realm.realm_id, entry.actr_id.serial_number)


def _bucket(entry: RouteEntry) -> _TypeBucket:
    t = entry.actr_id.type
    return (entry.actr_id.realm.realm_id, t.manufacturer, t.name)


class ActorRegistry:
    """Registered actors by (realm, serial), indexed by realm and type name.

    Iteration follows insertion order ("registry order" of signaling.md §8).
    """

    def __init__(self) -> None:
        self._entries: dict[ActorKey, RouteEntry] = {}
        self._by_type: dict[_TypeBucket, dict[ActorKey, RouteEntry]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[RouteEntry]:
        return iter(list(self._entries.values()))

    def get(self, key: ActorKey) -> RouteEntry | None:
        return self._entries.get(key)

    def add(self, entry: RouteEntry) -> None:
        """Insert or replace the entry of ``entry.actr_id``."""
        key = entry_key(entry)
        self.remove(key)
        self._entries[key] = entry
        self._by_type.setdefault(_bucket(entry), {})[key] = entry

    def remove(self, key: ActorKey) -> RouteEntry | None:
        """Drop an actor; returns its entry if it had one."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            bucket = _bucket(entry)
            members = self._by_type.get(bucket)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._by_type[bucket]
        return entry

    def of_type(self, realm_id: int, manufacturer: str, name: str) -> list[RouteEntry]:
        """Entries of one realm whose type has this manufacturer and name."""
        members = self._by_type.get((realm_id, manufacturer, name))
        return [] if members is None else list(members.values())

    def in_realm(self, realm_id: int) -> Iterator[RouteEntry]:
        return (
            e for e in self._entries.values() if e.actr_id.realm.realm_id == realm_id
        )

    def expired(self, now: float, timeout: float) -> list[RouteEntry]:
        """Entries whose last heartbeat is more than ``timeout`` seconds old."""
        return [e for e in self._entries.values() if now - e.last_heartbeat > timeout]

    def online_by_realm(self) -> dict[int, int]:
        """Number of online actors per realm (for metrics)."""
        counts: dict[int, int] = {}
        for entry in self._entries.values():
            if entry.online:
                realm = entry.actr_id.realm.realm_id
                counts[realm] = counts.get(realm, 0) + 1
        return counts


def spec_key(actr_type: actr_pb2.ActrType, fingerprint: str) -> SpecKey:
    version = normalize_version(
        actr_type.version if actr_type.HasField("version") else None
    )
    return (actr_type.manufacturer, actr_type.name, version or "", fingerprint)


class SpecIndex:
    """ServiceSpecs by (manufacturer, name, normalized version, fingerprint)."""

    def __init__(self) -> None:
        self._specs: dict[SpecKey, tuple[actr_pb2.ServiceSpec, int]] = {}

    def __len__(self) -> int:
        return len(self._specs)

    def load(self, rows: Iterable[SpecRow]) -> None:
        for row in rows:
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(row.spec)
            self._specs[row.key] = (spec, row.expires_at)

    def put(
        self, actr_type: actr_pb2.ActrType, spec: actr_pb2.ServiceSpec, now: float
    ) -> SpecRow:
        """Store the spec an actor of ``actr_type`` registered; returns its row."""
        key = spec_key(actr_type, spec.fingerprint)
        expires_at = int(now) + SPEC_TTL
        self._specs[key] = (spec, expires_at)
        return SpecRow(key, spec.SerializePartialToString(), expires_at)

    def lookup(
        self, actr_type: actr_pb2.ActrType, fingerprint: str, now: float
    ) -> tuple[actr_pb2.ServiceSpec | None, int | None]:
        """The unexpired spec and, when its TTL was extended enough, the new expiry."""
        key = spec_key(actr_type, fingerprint)
        found = self._specs.get(key)
        if found is None:
            return None, None
        spec, expires_at = found
        if expires_at <= now:
            del self._specs[key]
            return None, None
        renewed = int(now) + SPEC_TTL
        if renewed - expires_at >= SPEC_TOUCH_STEP:
            self._specs[key] = (spec, renewed)
            return spec, renewed
        return spec, None

    def sweep(self, now: float) -> int:
        stale = [k for k, (_, exp) in self._specs.items() if exp <= now]
        for key in stale:
            del self._specs[key]
        return len(stale)
