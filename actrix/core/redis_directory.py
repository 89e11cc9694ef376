"""``RedisDirectory``: the :class:`~actrix.core.directory.ActorDirectory` on Redis.

Several processes and nodes share one directory. Keys (``P`` = key prefix):

``P a:{realm}:{serial}``      hash, one registered actor; TTL = heartbeat timeout,
                              refreshed by every heartbeat and reconnect.
``P r:{realm}``               sorted set of serials by registration order.
``P t:{realm}:{mfr}:{name}``  the same per type (mfr, name hex-encoded).
``P seq``                     the registration order counter.
``P s:{type}``                hash subscriber ``realm:serial`` -> its ActrId bytes.
``P sa:{realm}:{serial}``     set of the types an actor watches.
``P spec:{key}``              a registered ServiceSpec; TTL = 7 days, renewed on use.

Writes that read and change an entry are Lua scripts (one atomic step each);
an index member whose hash expired is dropped by the next read of the index.
Each entry names the node (``node``: this process's id, new on every start, so
a restarted node never takes its dead sessions for its own) and the session
that hold the actor's socket. Entries of actors connected here are also kept
in memory for the synchronous :meth:`RedisDirectory.cached`.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core import redis_scripts as scripts
from actrix.core.directory import (
    MAX_SUBSCRIPTIONS_PER_ACTOR,
    ActorEntry,
    ActorKey,
    DirectoryUnavailable,
    Heartbeat,
    Location,
    Subscriber,
)
from actrix.core.logthrottle import LogThrottle
from actrix.core.redis_client import RedisClient
from actrix.core.redis_entries import (
    CorruptEntry,
    beat_fields,
    decode_entry,
    encode_entry,
    hex_text,
    spec_token,
    type_token,
)
from actrix.proto import actr_pb2

log = Logger()

SPEC_TTL: Final = 7 * 24 * 3600
# A node's liveness key lives this long (s; at most the heartbeat timeout);
# the signaling service renews it every directory.NODE_BEAT_INTERVAL.
NODE_TTL: Final = 5.0
# Specs fetched for route negotiation stay in memory (oldest dropped first).
MAX_CACHED_SPECS: Final = 1000
DUPLICATE_LOG_INTERVAL: Final = 60.0
# Where an online actor of another node is, as last read by a relay (s, count).
LOCATION_TTL: Final = 1.0
MAX_CACHED_LOCATIONS: Final = 10000


def node_name(configured: str | None = None, worker: int | None = None) -> str:
    """The node's name: ``cluster.node_id`` or host name and pid, plus the worker."""
    name = configured or f"{socket.gethostname()}-{os.getpid()}"
    return name if worker is None else f"{name}-w{worker}"


def new_node_id(name: str | None = None) -> str:
    """This process's id in the directory: its name and a fresh random part.

    A new one on every start (the node's incarnation), so entries a dead
    process left behind never look like this process's own.
    """
    return f"{name or node_name()}-{secrets.token_hex(4)}"


class RedisDirectory:
    """Registered actors and presence subscriptions shared through Redis."""

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        node_id: str,
        heartbeat_timeout: float,
        prefix: str,
        name: str | None = None,
    ) -> None:
        self._redis = client
        self._name = name
        self._throttle = LogThrottle(clock)
        self._duplicate_logged = -DUPLICATE_LOG_INTERVAL
        # What the last beat saw: live node ids and their actor counts.
        self.nodes: dict[str, int] = {}
        self._locations: dict[ActorKey, tuple[Location, float]] = {}
        self._refreshing: set[ActorKey] = set()
        self._clock = clock
        self._node_id = node_id
        self._ttl_ms = str(max(1, int(heartbeat_timeout * 1000)))
        self._node_ttl_ms = str(int(min(heartbeat_timeout, NODE_TTL) * 1000))
        self._p = prefix
        self._local: dict[ActorKey, ActorEntry] = {}
        self._local_subscriptions: dict[ActorKey, int] = {}
        # What actors connected here watch (type token -> their ActrId bytes):
        # written back with the actor's entry when Redis lost them.
        self._watching: dict[ActorKey, dict[str, bytes]] = {}
        self._specs: dict[str, tuple[actr_pb2.ServiceSpec, float]] = {}

    # -- keys -------------------------------------------------------------

    def _entry_key(self, key: ActorKey) -> str:
        return f"{self._p}a:{key[0]}:{key[1]}"

    def _realm_key(self, realm_id: int) -> str:
        return f"{self._p}r:{realm_id}"

    def _type_key(self, realm_id: int, manufacturer: str, name: str) -> str:
        return f"{self._p}t:{realm_id}:{hex_text(manufacturer)}:{hex_text(name)}"

    def _subs_key(self, token: str) -> str:
        return f"{self._p}s:{token}"

    def _watching_key(self, key: ActorKey) -> str:
        return f"{self._p}sa:{key[0]}:{key[1]}"

    def _spec_key(self, token: str) -> str:
        return f"{self._p}spec:{token}"

    def _node_actors_key(self, node: str) -> str:
        return f"{self._p}n:{node}"

    def _node_alive_key(self, node: str) -> str:
        return f"{self._p}node:{node}"

    def _remove_args(self, key: ActorKey, node: str, session: str) -> list[str]:
        return [str(key[1]), node, session, f"{self._p}n:", f"{key[0]}:{key[1]}"]

    # -- memory only ------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def shared(self) -> bool:
        return True

    @property
    def available(self) -> bool:
        return self._redis.available

    def cached(self, key: ActorKey) -> ActorEntry | None:
        return self._local.get(key)

    def local_count(self) -> int:
        """Actors whose socket is on this process."""
        return len(self._local)

    def released(self, key: ActorKey) -> None:
        self._local.pop(key, None)
        self._locations.pop(key, None)

    def online_by_realm(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for entry in self._local.values():
            if entry.online:
                realm = entry.actr_id.realm.realm_id
                counts[realm] = counts.get(realm, 0) + 1
        return counts

    def client_spec(
        self, actr_type: actr_pb2.ActrType, fingerprint: str
    ) -> actr_pb2.ServiceSpec | None:
        found = self._specs.get(spec_token(actr_type, fingerprint))
        if found is None or found[1] <= self._clock.seconds():
            return None
        return found[0]

    def subscription_count(self) -> int:
        return sum(self._local_subscriptions.values())

    def on_restored(self, callback: Callable[[ActorKey], None]) -> None:
        """Nothing is restored from a store: Redis entries never go stale."""

    def _remember(self, entry: ActorEntry | None) -> ActorEntry | None:
        """Keep an entry in memory while this process holds its actor."""
        if entry is None:
            return None
        if entry.node == self._node_id:
            self._local[entry.key] = entry
        else:
            self._local.pop(entry.key, None)
        return entry

    def _decode(self, reply: Any) -> ActorEntry | None:
        if not reply:
            return None
        try:
            return decode_entry(reply)
        except CorruptEntry as e:
            self._decode_failed(str(e))
            return None

    def _decode_failed(self, reason: str) -> None:
        # Every read of an index meets the same bad hash: once a minute.
        dropped = self._throttle.admit("redis", "corrupt entry")
        if dropped is not None:
            log.warn(
                "unreadable directory entry skipped: {reason}"
                " ({dropped} more since the last line)",
                reason=reason,
                dropped=dropped,
            )

    # -- writes -----------------------------------------------------------

    async def register(self, entry: ActorEntry) -> None:
        entry = attrs.evolve(entry, node=self._node_id)
        await self._write(entry)
        self._local[entry.key] = entry
        if entry.service_spec is not None:
            await self._save_spec(entry.actr_id.type, entry.service_spec)

    async def _write(self, entry: ActorEntry) -> None:
        key = entry.key
        t = entry.actr_id.type
        await self._redis.run(
            scripts.REGISTER,
            [
                self._entry_key(key),
                self._realm_key(key[0]),
                self._type_key(key[0], t.manufacturer, t.name),
                f"{self._p}seq",
                self._node_actors_key(self._node_id),
            ],
            [self._ttl_ms, str(key[1]), f"{key[0]}:{key[1]}", *encode_entry(entry)],
        )

    async def _save_spec(
        self, actr_type: actr_pb2.ActrType, spec: actr_pb2.ServiceSpec
    ) -> None:
        token = spec_token(actr_type, spec.fingerprint)
        await self._redis.command(
            "SET",
            self._spec_key(token),
            spec.SerializePartialToString(),
            "EX",
            SPEC_TTL,
        )

    async def fetch_spec(self, actr_type: actr_pb2.ActrType, fingerprint: str) -> None:
        """Load one spec from Redis so :meth:`client_spec` answers it (TTL renewed)."""
        token = spec_token(actr_type, fingerprint)
        data = await self._redis.command("GETEX", self._spec_key(token), "EX", SPEC_TTL)
        if not data:
            self._specs.pop(token, None)
            return
        spec = actr_pb2.ServiceSpec()
        try:
            spec.ParseFromString(data)
        except Exception:
            log.warn("unreadable spec in the directory skipped")
            return
        self._specs.pop(token, None)
        self._specs[token] = (spec, self._clock.seconds() + SPEC_TTL)
        while len(self._specs) > MAX_CACHED_SPECS:
            del self._specs[next(iter(self._specs))]

    async def heartbeat(
        self, key: ActorKey, beat: Heartbeat, now: float
    ) -> ActorEntry | None:
        """Refresh the entry and its TTL.

        While Redis is down the beat lands on the copy held here, so actors
        connected to this process stay served; when Redis answers again
        without the entry (it restarted, or the TTL ran out meanwhile) the
        entry held here is written back, and the actor is found again.
        """
        held = self._local.get(key)
        if held is not None:
            held = beat.applied(held, now)
        if not self._redis.available:
            if held is not None:
                self._local[key] = held
            return held
        reply = await self._redis.run(
            scripts.UPDATE,
            [self._entry_key(key)],
            [self._ttl_ms, *beat_fields(beat, now)],
        )
        if not reply and held is not None and held.node == self._node_id:
            await self._write(held)
            if held.service_spec is not None:
                await self._save_spec(held.actr_id.type, held.service_spec)
            for token, subscriber in list(self._watching.get(key, {}).items()):
                await self._write_subscription(key, token, subscriber)
            log.debug(
                "actor {realm}:{serial} written back to the directory",
                realm=key[0],
                serial=key[1],
            )
            self._local[key] = held
            return held
        return self._remember(self._decode(reply))

    async def set_online(
        self,
        key: ActorKey,
        online: bool,
        now: float | None = None,
        session: int | None = None,
    ) -> ActorEntry | None:
        fields: list[bytes | str] = []
        if now is not None:
            fields += ["hb", repr(now)]
        member = ""
        if session is not None:
            fields += ["node", self._node_id, "sess", str(session)]
            member = f"{key[0]}:{key[1]}"
        reply = await self._redis.run(
            scripts.SET_ONLINE,
            [self._entry_key(key), self._node_actors_key(self._node_id)],
            [
                "1" if online else "0",
                "" if now is None else self._ttl_ms,
                member,
                *fields,
            ],
        )
        if not reply:
            return None
        before, current = reply
        entry = self._remember(self._decode(current))
        changed = before != (b"1" if online else b"0")
        return entry if changed else None

    async def remove(self, key: ActorKey) -> ActorEntry | None:
        self._local.pop(key, None)
        reply = await self._redis.run(
            scripts.REMOVE,
            [self._entry_key(key), self._realm_key(key[0])],
            self._remove_args(key, "", ""),
        )
        return self._decode(reply) if reply else None

    async def expire(self, now: float, timeout: float) -> list[ActorEntry]:
        """Drop this node's actors silent for too long (Redis expires the rest)."""
        stale = [e for e in self._local.values() if now - e.last_heartbeat > timeout]
        expired: list[ActorEntry] = []
        for entry in stale:
            key = entry.key
            self._local.pop(key, None)
            reply = await self._redis.run(
                scripts.REMOVE,
                [self._entry_key(key), self._realm_key(key[0])],
                self._remove_args(key, self._node_id, str(entry.session)),
            )
            # 0: another node or socket holds the actor now; nothing expired.
            if reply != 0:
                expired.append(entry)
        return expired

    async def beat(self, now: float) -> list[ActorEntry]:
        """Say this node is alive; drop the actors of nodes that stopped saying so.

        The liveness key lives :data:`NODE_TTL` seconds (at most the heartbeat
        timeout), so the actors of a node killed with -9 leave within it, and
        the caller announces them down. One node takes each dead one over.
        """
        nodes = f"{self._p}nodes"
        await self._redis.command(
            "SET", self._node_alive_key(self._node_id), "1", "PX", self._node_ttl_ms
        )
        await self._redis.command("SADD", nodes, self._node_id)
        await self._claim_name(now)
        gone: list[ActorEntry] = []
        live = {self._node_id: len(self._local)}
        for raw in await self._redis.command("SMEMBERS", nodes) or []:
            node = raw.decode("utf-8", "replace")
            if node == self._node_id:
                continue
            members = await self._redis.run(
                scripts.TAKE_OVER,
                [nodes, self._node_alive_key(node), self._node_actors_key(node)],
                [node],
            )
            if members is None:
                count = await self._redis.command("SCARD", self._node_actors_key(node))
                live[node] = int(count or 0)
                continue
            log.info(
                "node {node} stopped; dropping its {count} actors",
                node=node,
                count=len(members),
            )
            for member in members:
                try:
                    realm, serial = (int(x) for x in member.split(b":"))
                except ValueError:
                    continue
                key = (realm, serial)
                reply = await self._redis.run(
                    scripts.REMOVE,
                    [self._entry_key(key), self._realm_key(realm)],
                    self._remove_args(key, node, ""),
                )
                entry = self._decode(reply) if reply else None
                if entry is not None:
                    gone.append(entry)
        self.nodes = live
        return gone

    async def _claim_name(self, now: float) -> None:
        """Hold ``cluster.node_id``; say (once a minute) when another node has it."""
        if self._name is None:
            return
        holder = await self._redis.run(
            scripts.CLAIM_NAME,
            [f"{self._p}name:{self._name}"],
            [self._node_id, self._node_ttl_ms],
        )
        if holder and now - self._duplicate_logged >= DUPLICATE_LOG_INTERVAL:
            self._duplicate_logged = now
            log.error(
                "cluster.node_id {name} is also the name of running node {other};"
                " give every node its own (this one runs on as {node})",
                name=self._name,
                other=bytes(holder).decode("utf-8", "replace"),
                node=self._node_id,
            )

    # -- reads ------------------------------------------------------------

    async def lookup(self, key: ActorKey) -> ActorEntry | None:
        reply = await self._redis.command("HGETALL", self._entry_key(key))
        return self._remember(self._decode(reply))

    async def locate(self, key: ActorKey) -> Location | None:
        """Where the actor is: four fields of the hash (HMGET), for the relay path.

        An online actor of another node is remembered for
        :data:`LOCATION_TTL`, so a stream of relays to it costs one Redis
        command each (the PUBLISH), not two. Within that second a relay to an
        actor that just went offline or moved reaches its old node, which
        drops it: what the sender sees of an offline target anyway.
        """
        held = self._local.get(key)
        if held is not None:
            return Location.of(held)
        cached = self._locations.get(key)
        if cached is not None and cached[1] > self._clock.seconds():
            return cached[0]
        return await self._fetch_location(key)

    async def _fetch_location(self, key: ActorKey) -> Location | None:
        """Ask Redis where the actor is; remember it while online elsewhere."""
        reply = await self._redis.command(
            "HMGET", self._entry_key(key), "node", "sess", "on", "tk"
        )
        self._locations.pop(key, None)
        if not reply or reply[0] is None:
            return None
        try:
            node, session, online, tk = reply
            location = Location(
                bytes(node).decode("utf-8"),
                int(session),
                online == b"1",
                bytes(tk).decode("utf-8"),
            )
        except (TypeError, ValueError) as e:
            self._decode_failed(str(e))
            return None
        if location.online and location.node != self._node_id:
            now = self._clock.seconds()
            self._locations[key] = (location, now + LOCATION_TTL)
            while len(self._locations) > MAX_CACHED_LOCATIONS:
                del self._locations[next(iter(self._locations))]
        return location

    def location_now(self, key: ActorKey) -> Location | None:
        """An actor held here, or an online one of another node seen lately.

        Past :data:`LOCATION_TTL` the remembered place still serves for one
        more TTL while a refresh runs in the background, so a stream of relays
        never stops for a Redis round trip; None: :meth:`locate` asks Redis.
        """
        held = self._local.get(key)
        if held is not None:
            return Location.of(held)
        cached = self._locations.get(key)
        if cached is None:
            return None
        location, fresh_until = cached
        now = self._clock.seconds()
        if fresh_until > now:
            return location
        if now - fresh_until >= LOCATION_TTL:
            return None
        if key not in self._refreshing:
            self._refreshing.add(key)
            Deferred.fromCoroutine(self._refresh_location(key))
        return location

    async def _refresh_location(self, key: ActorKey) -> None:
        try:
            await self._fetch_location(key)
        except DirectoryUnavailable:
            pass  # the place expires; locate() asks again later
        except Exception:
            log.failure("refreshing where actor {key} is", key=key)
        finally:
            self._refreshing.discard(key)

    async def _read_index(self, index: str, realm_id: int) -> list[ActorEntry]:
        """The live entries an index names, in its order (one round trip)."""
        prefix = f"{self._p}a:{realm_id}:"
        replies = await self._redis.run(scripts.READ_INDEX, [index], [prefix])
        entries = []
        for reply in replies or []:
            entry = self._decode(reply)
            if entry is not None:
                entries.append(entry)
        return entries

    async def in_realm(self, realm_id: int) -> Sequence[ActorEntry]:
        return await self._read_index(self._realm_key(realm_id), realm_id)

    async def of_type(
        self, realm_id: int, manufacturer: str, name: str
    ) -> Sequence[ActorEntry]:
        index = self._type_key(realm_id, manufacturer, name)
        return await self._read_index(index, realm_id)

    # -- presence subscriptions -------------------------------------------

    async def subscribe(
        self, target: actr_pb2.ActrType, subscriber: actr_pb2.ActrId
    ) -> bool:
        key = (subscriber.realm.realm_id, subscriber.serial_number)
        token = type_token(target)
        added = await self._write_subscription(
            key, token, subscriber.SerializeToString()
        )
        if added:
            self._watching.setdefault(key, {})[token] = subscriber.SerializeToString()
            await self._count_local(key)
        return bool(added)

    async def _write_subscription(
        self, key: ActorKey, token: str, subscriber: bytes
    ) -> bool:
        added = await self._redis.run(
            scripts.SUBSCRIBE,
            [self._subs_key(token), self._watching_key(key)],
            [f"{key[0]}:{key[1]}", subscriber, token, MAX_SUBSCRIPTIONS_PER_ACTOR],
        )
        return bool(added)

    async def _count_local(self, key: ActorKey) -> None:
        count = int(await self._redis.command("SCARD", self._watching_key(key)))
        if count:
            self._local_subscriptions[key] = count
        else:
            self._local_subscriptions.pop(key, None)

    async def unsubscribe(
        self, target: actr_pb2.ActrType, subscriber: ActorKey
    ) -> bool:
        token = type_token(target)
        watched = self._watching.get(subscriber)
        if watched is not None:
            watched.pop(token, None)
            if not watched:
                del self._watching[subscriber]
        removed = await self._redis.run(
            scripts.UNSUBSCRIBE,
            [self._subs_key(token), self._watching_key(subscriber)],
            [f"{subscriber[0]}:{subscriber[1]}", token],
        )
        if subscriber in self._local_subscriptions:
            await self._count_local(subscriber)
        return bool(removed)

    async def forget_subscriptions(self, subscriber: ActorKey) -> None:
        self._local_subscriptions.pop(subscriber, None)
        self._watching.pop(subscriber, None)
        await self._redis.run(
            scripts.FORGET,
            [self._watching_key(subscriber)],
            [f"{self._p}s:", f"{subscriber[0]}:{subscriber[1]}"],
        )

    async def subscribers(self, actr_type: actr_pb2.ActrType) -> list[Subscriber]:
        reply = await self._redis.command(
            "HGETALL", self._subs_key(type_token(actr_type))
        )
        found: list[Subscriber] = []
        for i in range(0, len(reply or []), 2):
            try:
                realm, serial = reply[i].decode("ascii").split(":")
                actr_id = actr_pb2.ActrId()
                actr_id.ParseFromString(reply[i + 1])
            except Exception:
                log.warn("unreadable presence subscription skipped")
                continue
            found.append(Subscriber((int(realm), int(serial)), actr_id))
        return found

    async def subscribed_actors(self) -> list[ActorKey]:
        """Actors that subscribed through this process."""
        return list(self._local_subscriptions)

    # -- upkeep -----------------------------------------------------------

    async def flush(self) -> None:
        """Nothing is buffered: every write went to Redis when it was made."""

    async def sweep(self) -> None:
        """Forget specs whose TTL ended (Redis expires its own copies)."""
        now = self._clock.seconds()
        for token in [t for t, (_, exp) in self._specs.items() if exp <= now]:
            del self._specs[token]
