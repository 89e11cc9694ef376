"""The in-memory actor registry and the in-memory index of the proto spec store.

:class:`ActorRegistry` is the in-memory table behind
:class:`~actrix.signaling.local_directory.LocalDirectory`. Its entries are
frozen :class:`~actrix.core.directory.ActorEntry` value objects; a change
replaces the entry. :class:`SpecIndex` answers the synchronous client-spec
lookups of route negotiation from memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from actrix.core.actrid import normalize_version
from actrix.core.directory import ActorKey
from actrix.proto import actr_pb2
from actrix.signaling.routing import RouteEntry
from actrix.signaling.store import SPEC_TTL, SpecKey, SpecRow

_TypeBucket = tuple[int, str, str]  # (realm_id, manufacturer, name)

# A lookup extends a spec's life; writing that back is skipped unless it moves
# the expiry by at least this much.
SPEC_TOUCH_STEP = 3600
# Bounds of the spec index (and, through the write-behind, of its table).
MAX_SPECS = 10_000
MAX_SPEC_BYTES = 64 * 1024 * 1024


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


class Departures:
    """Actors that went offline, in the order they left, for the reconnect window.

    An actor marked here is removed from the registry once ``window`` seconds
    pass without it coming back (signaling.md §4.4 removes it at session end;
    the window lets a client that lost its socket reconnect with its URL
    identity). Marking again restarts the actor's window.
    """

    __slots__ = ("_since", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._since: dict[ActorKey, float] = {}

    def __len__(self) -> int:
        return len(self._since)

    def __contains__(self, key: object) -> bool:
        return key in self._since

    def mark(self, key: ActorKey, now: float) -> None:
        """``key`` went offline at ``now``."""
        self._since.pop(key, None)
        self._since[key] = now

    def forget(self, key: ActorKey) -> None:
        """``key`` came back or left for good."""
        self._since.pop(key, None)

    def next_due(self) -> float | None:
        """When the oldest window ends, if any actor is waiting."""
        for since in self._since.values():
            return since + self.window
        return None

    def due(self, now: float, most: int | None = None) -> list[ActorKey]:
        """Pop the actors whose window has ended at ``now`` (at most ``most``).

        Marks arrive in time order and the window is fixed, so the dict's
        insertion order is the order in which windows end.
        """
        ended: list[ActorKey] = []
        limit = now - self.window
        for key, since in self._since.items():
            if since > limit or len(ended) == most:
                break
            ended.append(key)
        for key in ended:
            del self._since[key]
        return ended


def spec_key(actr_type: actr_pb2.ActrType, fingerprint: str) -> SpecKey:
    version = normalize_version(
        actr_type.version if actr_type.HasField("version") else None
    )
    return (actr_type.manufacturer, actr_type.name, version or "", fingerprint)


class SpecIndex:
    """ServiceSpecs by (manufacturer, name, normalized version, fingerprint).

    Any client that may register can add specs, so the index is bounded by
    count and by serialized size: :meth:`trim` drops the least recently
    stored or renewed specs beyond either bound.
    """

    def __init__(
        self, max_entries: int = MAX_SPECS, max_bytes: int = MAX_SPEC_BYTES
    ) -> None:
        self._specs: OrderedDict[SpecKey, tuple[actr_pb2.ServiceSpec, int, int]] = (
            OrderedDict()
        )
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._specs)

    def _set(
        self, key: SpecKey, spec: actr_pb2.ServiceSpec, expires_at: int, size: int
    ) -> None:
        self._drop(key)
        self._specs[key] = (spec, expires_at, size)
        self._bytes += size

    def _drop(self, key: SpecKey) -> None:
        found = self._specs.pop(key, None)
        if found is not None:
            self._bytes -= found[2]

    def load(self, rows: Iterable[SpecRow]) -> None:
        for row in rows:
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(row.spec)
            self._set(row.key, spec, row.expires_at, len(row.spec))
        self.trim()

    def put(
        self, actr_type: actr_pb2.ActrType, spec: actr_pb2.ServiceSpec, now: float
    ) -> SpecRow:
        """Store the spec an actor of ``actr_type`` registered; returns its row."""
        key = spec_key(actr_type, spec.fingerprint)
        expires_at = int(now) + SPEC_TTL
        data = spec.SerializePartialToString()
        self._set(key, spec, expires_at, len(data))
        return SpecRow(key, data, expires_at)

    def trim(self) -> list[SpecKey]:
        """Drop the oldest specs beyond the bounds; returns their keys."""
        dropped: list[SpecKey] = []
        while self._specs and (
            len(self._specs) > self._max_entries or self._bytes > self._max_bytes
        ):
            key = next(iter(self._specs))
            self._drop(key)
            dropped.append(key)
        return dropped

    def lookup(
        self, actr_type: actr_pb2.ActrType, fingerprint: str, now: float
    ) -> tuple[actr_pb2.ServiceSpec | None, int | None]:
        """The unexpired spec and, when its TTL was extended enough, the new expiry."""
        key = spec_key(actr_type, fingerprint)
        found = self._specs.get(key)
        if found is None:
            return None, None
        spec, expires_at, size = found
        if expires_at <= now:
            self._drop(key)
            return None, None
        renewed = int(now) + SPEC_TTL
        if renewed - expires_at >= SPEC_TOUCH_STEP:
            self._set(key, spec, renewed, size)
            return spec, renewed
        return spec, None

    def sweep(self, now: float) -> int:
        stale = [k for k, (_, exp, _) in self._specs.items() if exp <= now]
        for key in stale:
            self._drop(key)
        return len(stale)
