"""The ``ActorDirectory`` port: registered actors, presence subscriptions, locations.

Every read and write of the signaling registry goes through this protocol;
``tap.py`` passes in the implementation (``LocalDirectory``: memory plus the
SQLite write-behind; ``RedisDirectory``: hashes with a TTL, shared by nodes).
Entries are frozen value objects: a heartbeat or an online change is an
explicit write that returns the new entry, never an in-place mutation.

Methods that may touch the network are ``async``. The synchronous ones answer
from this process's memory only; the relay hot path never calls the directory
at all (it looks up the target's local session, a dict lookup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from actrix.proto import actr_pb2

ActorKey = tuple[int, int]  # (realm_id, serial)
TypeId = tuple[str, str, bool, str]  # manufacturer, name, has version, version

# Types one actor may watch at once; the table is keyed by client input.
MAX_SUBSCRIPTIONS_PER_ACTOR = 1024
# How often (s) a shared directory's ``beat`` runs: this process says it is
# alive and takes over the actors of processes that stopped saying so.
NODE_BEAT_INTERVAL = 1.0


def type_id(actr_type: actr_pb2.ActrType) -> TypeId:
    """The exact-type key of presence subscriptions (signaling.md §7)."""
    return (
        actr_type.manufacturer,
        actr_type.name,
        actr_type.HasField("version"),
        actr_type.version,
    )


@attrs.frozen
class ActorEntry:
    """One registered actor as discovery and route selection see it.

    ``node`` and ``session`` name the process and socket that hold the actor
    (empty / 0 for entries restored from a store and not yet reconnected).
    The protobuf fields are private copies nobody mutates.
    """

    actr_id: actr_pb2.ActrId
    type_key: str
    service_name: str
    service_spec: actr_pb2.ServiceSpec | None
    ws_address: str | None
    availability: int | None = None
    power_reserve: float | None = None
    mailbox_backlog: float | None = None
    sticky_client_ids: tuple[str, ...] = ()
    last_heartbeat: float = 0.0
    online: bool = True
    location: tuple[float, float] | None = None  # (latitude, longitude) in degrees
    node: str = ""
    session: int = 0

    @property
    def key(self) -> ActorKey:
        return (self.actr_id.realm.realm_id, self.actr_id.serial_number)


@attrs.frozen
class Heartbeat:
    """What a Ping reports (signaling.md §5.3)."""

    availability: int
    power_reserve: float
    mailbox_backlog: float
    sticky_client_ids: tuple[str, ...]

    def applied(self, entry: ActorEntry, now: float) -> ActorEntry:
        """``entry`` with this Ping's figures, heard at ``now``."""
        return attrs.evolve(
            entry,
            availability=self.availability,
            power_reserve=self.power_reserve,
            mailbox_backlog=self.mailbox_backlog,
            sticky_client_ids=self.sticky_client_ids,
            last_heartbeat=now,
        )


@attrs.frozen
class Subscriber:
    """An actor watching a type, with the ActrId it subscribed as."""

    key: ActorKey
    actr_id: actr_pb2.ActrId


@attrs.frozen
class Location:
    """Where an actor's socket is: what a relay to it needs, and no more."""

    node: str
    session: int
    online: bool
    type_key: str

    @classmethod
    def of(cls, entry: ActorEntry) -> Location:
        return cls(entry.node, entry.session, entry.online, entry.type_key)


class DirectoryUnavailable(Exception):
    """The shared directory cannot be reached now (Redis down): try again later."""


class ActorDirectory(Protocol):
    """Registered actors, presence subscriptions and actor -> (node, session)."""

    @property
    def node_id(self) -> str:
        """The id of this process in the directory (its entries carry it)."""

    @property
    def available(self) -> bool:
        """Whether writes may succeed now (False: refuse new registrations)."""

    @property
    def shared(self) -> bool:
        """Whether other processes share this directory (actors may be elsewhere)."""

    # -- memory only (synchronous) -------------------------------------

    def released(self, key: ActorKey) -> None:
        """Another process now holds the actor: forget the copy held here."""

    def cached(self, key: ActorKey) -> ActorEntry | None:
        """The entry this process holds for ``key``, without asking anyone."""

    def online_by_realm(self) -> dict[int, int]:
        """Online actors per realm that this process knows of (metrics)."""

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        """Spec store lookup for route negotiation; extends the spec's TTL."""

    def subscription_count(self) -> int:
        """Presence subscriptions this process holds."""

    def on_restored(self, callback: Callable[[ActorKey], None]) -> None:
        """``callback(key)`` for each entry brought back offline from a store."""

    # -- writes -----------------------------------------------------------

    async def register(self, entry: ActorEntry) -> None:
        """Insert or replace the entry of ``entry.actr_id`` (and store its spec)."""

    async def heartbeat(
        self, key: ActorKey, beat: Heartbeat, now: float
    ) -> ActorEntry | None:
        """Record a Ping; the new entry, or None if the actor is unknown."""

    async def set_online(
        self,
        key: ActorKey,
        online: bool,
        now: float | None = None,
        session: int | None = None,
    ) -> ActorEntry | None:
        """Flip the online flag (and, with ``now``, refresh the heartbeat).

        With ``session`` this process's session of that id now holds the
        actor (a reconnect). Returns the new entry only when the flag changed.
        """

    async def remove(self, key: ActorKey) -> ActorEntry | None:
        """Drop an actor; its entry if it had one."""

    async def fetch_spec(self, actr_type: actr_pb2.ActrType, fingerprint: str) -> None:
        """Make :meth:`client_spec` able to answer this key from memory."""

    async def expire(self, now: float, timeout: float) -> list[ActorEntry]:
        """Drop the entries silent for more than ``timeout`` s; returns them."""

    async def beat(self, now: float) -> list[ActorEntry]:
        """Keep this process known alive; drop and return dead processes' actors."""

    # -- reads ------------------------------------------------------------

    async def lookup(self, key: ActorKey) -> ActorEntry | None:
        """The actor's entry, from memory or (restored offline) from the store."""

    async def locate(self, key: ActorKey) -> Location | None:
        """Where the actor's socket is (cheaper than :meth:`lookup` when shared)."""

    def location_now(self, key: ActorKey) -> Location | None:
        """:meth:`locate` from memory; None when that needs the network or store."""

    async def in_realm(self, realm_id: int) -> Sequence[ActorEntry]:
        """Every entry of a realm, in registration order."""

    async def of_type(
        self, realm_id: int, manufacturer: str, name: str
    ) -> Sequence[ActorEntry]:
        """Entries of a realm whose type has this manufacturer and name."""

    # -- presence subscriptions -------------------------------------------

    async def subscribe(
        self, target: actr_pb2.ActrType, subscriber: actr_pb2.ActrId
    ) -> bool:
        """Watch ``target`` (idempotent); False beyond the per-actor cap."""

    async def unsubscribe(
        self, target: actr_pb2.ActrType, subscriber: ActorKey
    ) -> bool:
        """Remove one subscription; False if there was none."""

    async def forget_subscriptions(self, subscriber: ActorKey) -> None:
        """Drop every subscription of an actor that has left."""

    async def subscribers(self, actr_type: actr_pb2.ActrType) -> list[Subscriber]:
        """Who watches this exact type."""

    async def subscribed_actors(self) -> list[ActorKey]:
        """Every actor holding at least one subscription (a snapshot)."""

    # -- upkeep -----------------------------------------------------------

    async def flush(self) -> None:
        """Write buffered changes to durable storage, if any."""

    async def sweep(self) -> None:
        """Delete expired stored entries and specs."""
