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

import json
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from actrix.core.actrid import normalize_version
from actrix.core.directory import (
    MAX_SUBSCRIPTIONS_PER_ACTOR,
    ActorEntry,
    ActorKey,
    Heartbeat,
    Subscriber,
    type_id,
)
from actrix.core.redis_client import RedisClient, Script
from actrix.proto import actr_pb2

log = Logger()

SPEC_TTL: Final = 7 * 24 * 3600
# A node's liveness key lives this long (s; at most the heartbeat timeout);
# the signaling service renews it every directory.NODE_BEAT_INTERVAL.
NODE_TTL: Final = 5.0
# Specs fetched for route negotiation stay in memory (oldest dropped first).
MAX_CACHED_SPECS: Final = 1000

# KEYS: entry, realm index, type index, counter, the node's actor set.
# ARGV: ttl ms, serial, member in the node set, then field/value pairs.
_REGISTER = Script("""
local seq = redis.call('INCR', KEYS[4])
local old = redis.call('HGET', KEYS[1], 'tidx')
if old then redis.call('ZREM', old, ARGV[2]) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'seq', seq, 'tidx', KEYS[3], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[2])
redis.call('SADD', KEYS[5], ARGV[3])
return seq
""")

# ARGV: ttl ms, then field/value pairs. The entry's new fields, or nil.
_UPDATE = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
""")

# KEYS: entry, the node's actor set (used when ARGV[3] is a member).
# ARGV: online '1'/'0', ttl ms or '', member or '', then field/value pairs.
# Returns {previous online flag, fields} or nil.
_SET_ONLINE = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local before = redis.call('HGET', KEYS[1], 'on')
redis.call('HSET', KEYS[1], 'on', ARGV[1], unpack(ARGV, 4))
if ARGV[3] ~= '' then redis.call('SADD', KEYS[2], ARGV[3]) end
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {before, redis.call('HGETALL', KEYS[1])}
""")

# KEYS: entry, realm index. ARGV: serial, node or '' (remove only if that
# node holds the actor), session or '' (and on that session), node set prefix,
# member. Returns the removed fields, nil if there was no entry, or 0 if
# another node or session holds the actor.
_REMOVE = Script("""
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return nil
end
local holder = redis.call('HMGET', KEYS[1], 'node', 'sess')
if ARGV[2] ~= '' and holder[1] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and holder[2] ~= ARGV[3] then return 0 end
local tidx = redis.call('HGET', KEYS[1], 'tidx')
if tidx then redis.call('ZREM', tidx, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if holder[1] then redis.call('SREM', ARGV[4] .. holder[1], ARGV[5]) end
return fields
""")

# KEYS: the nodes set, the node's liveness key, its actor set. ARGV: its id.
# For the one caller that takes a dead node over: the members of its actor
# set (which is deleted); for everyone else nil.
_TAKE_OVER = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return nil end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return nil end
local members = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return members
""")

# KEYS: an index. ARGV: the entry key prefix. Every live entry, index order.
_READ_INDEX = Script("""
local out = {}
for _, serial in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. serial)
  if #fields == 0 then
    redis.call('ZREM', KEYS[1], serial)
  else
    out[#out + 1] = fields
  end
end
return out
""")

# KEYS: subscribers of the type, types of the actor.
# ARGV: member, ActrId bytes, type token, cap.
_SUBSCRIBE = Script("""
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 0
   and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
""")

_UNSUBSCRIBE = Script("""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
""")

# KEYS: types of the actor. ARGV: subscription key prefix, member.
_FORGET = Script("""
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('HDEL', ARGV[1] .. token, ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
""")


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


class CorruptEntry(Exception):
    """A hash in Redis is not a readable directory entry."""


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


def _type_token(actr_type: actr_pb2.ActrType) -> str:
    return json.dumps(type_id(actr_type), separators=(",", ":")).encode().hex()


def _spec_token(actr_type: actr_pb2.ActrType, fingerprint: str) -> str:
    version = normalize_version(
        actr_type.version if actr_type.HasField("version") else None
    )
    key = [actr_type.manufacturer, actr_type.name, version or "", fingerprint]
    return json.dumps(key, separators=(",", ":")).encode().hex()


def _opt(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def encode_entry(entry: ActorEntry) -> list[bytes | str]:
    """Field/value pairs of an entry's hash (without ``seq`` and ``tidx``)."""
    spec = b"" if entry.service_spec is None else entry.service_spec.SerializeToString()
    location = "" if entry.location is None else json.dumps(list(entry.location))
    return [
        "id",
        entry.actr_id.SerializeToString(),
        "tk",
        entry.type_key,
        "name",
        entry.service_name,
        "spec",
        spec,
        "hasspec",
        "1" if entry.service_spec is not None else "0",
        "ws",
        "" if entry.ws_address is None else entry.ws_address,
        "hasws",
        "1" if entry.ws_address is not None else "0",
        "av",
        _opt(entry.availability),
        "pr",
        _opt(entry.power_reserve),
        "mb",
        _opt(entry.mailbox_backlog),
        "sticky",
        json.dumps(list(entry.sticky_client_ids)),
        "hb",
        repr(entry.last_heartbeat),
        "on",
        "1" if entry.online else "0",
        "loc",
        location,
        "node",
        entry.node,
        "sess",
        str(entry.session),
    ]


def _beat_fields(beat: Heartbeat, now: float) -> list[bytes | str]:
    return [
        "av",
        repr(beat.availability),
        "pr",
        repr(beat.power_reserve),
        "mb",
        repr(beat.mailbox_backlog),
        "sticky",
        json.dumps(list(beat.sticky_client_ids)),
        "hb",
        repr(now),
    ]


def decode_entry(reply: Sequence[bytes]) -> ActorEntry:
    """The entry of an HGETALL reply.

    Raises:
        CorruptEntry: a field is missing or unreadable.
    """
    try:
        fields = {
            reply[i].decode("ascii"): reply[i + 1] for i in range(0, len(reply), 2)
        }
        actr_id = actr_pb2.ActrId()
        actr_id.ParseFromString(fields["id"])
        spec: actr_pb2.ServiceSpec | None = None
        if fields["hasspec"] == b"1":
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(fields["spec"])
        location = None
        if fields["loc"]:
            lat, lon = json.loads(fields["loc"])
            location = (float(lat), float(lon))
        sticky = json.loads(fields["sticky"])
        if not isinstance(sticky, list) or not all(isinstance(s, str) for s in sticky):
            raise ValueError("sticky")
        return ActorEntry(
            actr_id=actr_id,
            type_key=fields["tk"].decode("utf-8"),
            service_name=fields["name"].decode("utf-8"),
            service_spec=spec,
            ws_address=fields["ws"].decode("utf-8")
            if fields["hasws"] == b"1"
            else None,
            availability=int(fields["av"]) if fields["av"] else None,
            power_reserve=float(fields["pr"]) if fields["pr"] else None,
            mailbox_backlog=float(fields["mb"]) if fields["mb"] else None,
            sticky_client_ids=tuple(sticky),
            last_heartbeat=float(fields["hb"]),
            online=fields["on"] == b"1",
            location=location,
            node=fields["node"].decode("utf-8"),
            session=int(fields["sess"]),
        )
    except Exception as e:
        raise CorruptEntry(str(e)) from e


class RedisDirectory:
    """Registered actors and presence subscriptions shared through Redis."""

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        node_id: str,
        heartbeat_timeout: float,
        prefix: str,
    ) -> None:
        self._redis = client
        self._clock = clock
        self._node_id = node_id
        self._ttl_ms = str(max(1, int(heartbeat_timeout * 1000)))
        self._node_ttl_ms = str(int(min(heartbeat_timeout, NODE_TTL) * 1000))
        self._p = prefix
        self._local: dict[ActorKey, ActorEntry] = {}
        self._local_subscriptions: dict[ActorKey, int] = {}
        self._specs: dict[str, tuple[actr_pb2.ServiceSpec, float]] = {}

    # -- keys -------------------------------------------------------------

    def _entry_key(self, key: ActorKey) -> str:
        return f"{self._p}a:{key[0]}:{key[1]}"

    def _realm_key(self, realm_id: int) -> str:
        return f"{self._p}r:{realm_id}"

    def _type_key(self, realm_id: int, manufacturer: str, name: str) -> str:
        return f"{self._p}t:{realm_id}:{_hex(manufacturer)}:{_hex(name)}"

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

    def cached(self, key: ActorKey) -> ActorEntry | None:
        return self._local.get(key)

    def released(self, key: ActorKey) -> None:
        self._local.pop(key, None)

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
        found = self._specs.get(_spec_token(actr_type, fingerprint))
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
            log.warn("unreadable directory entry skipped: {reason}", reason=str(e))
            return None

    # -- writes -----------------------------------------------------------

    async def register(self, entry: ActorEntry) -> None:
        entry = attrs.evolve(entry, node=self._node_id)
        key = entry.key
        t = entry.actr_id.type
        await self._redis.run(
            _REGISTER,
            [
                self._entry_key(key),
                self._realm_key(key[0]),
                self._type_key(key[0], t.manufacturer, t.name),
                f"{self._p}seq",
                self._node_actors_key(self._node_id),
            ],
            [self._ttl_ms, str(key[1]), f"{key[0]}:{key[1]}", *encode_entry(entry)],
        )
        self._local[key] = entry
        if entry.service_spec is not None:
            await self._save_spec(t, entry.service_spec)

    async def _save_spec(
        self, actr_type: actr_pb2.ActrType, spec: actr_pb2.ServiceSpec
    ) -> None:
        token = _spec_token(actr_type, spec.fingerprint)
        await self._redis.command(
            "SET",
            self._spec_key(token),
            spec.SerializePartialToString(),
            "EX",
            SPEC_TTL,
        )

    async def fetch_spec(self, actr_type: actr_pb2.ActrType, fingerprint: str) -> None:
        """Load one spec from Redis so :meth:`client_spec` answers it (TTL renewed)."""
        token = _spec_token(actr_type, fingerprint)
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
        reply = await self._redis.run(
            _UPDATE,
            [self._entry_key(key)],
            [self._ttl_ms, *_beat_fields(beat, now)],
        )
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
            _SET_ONLINE,
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
            _REMOVE,
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
                _REMOVE,
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
        gone: list[ActorEntry] = []
        for raw in await self._redis.command("SMEMBERS", nodes) or []:
            node = raw.decode("utf-8", "replace")
            if node == self._node_id:
                continue
            members = await self._redis.run(
                _TAKE_OVER,
                [nodes, self._node_alive_key(node), self._node_actors_key(node)],
                [node],
            )
            if members is None:
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
                    _REMOVE,
                    [self._entry_key(key), self._realm_key(realm)],
                    self._remove_args(key, node, ""),
                )
                entry = self._decode(reply) if reply else None
                if entry is not None:
                    gone.append(entry)
        return gone

    # -- reads ------------------------------------------------------------

    async def lookup(self, key: ActorKey) -> ActorEntry | None:
        reply = await self._redis.command("HGETALL", self._entry_key(key))
        return self._remember(self._decode(reply))

    async def _read_index(self, index: str, realm_id: int) -> list[ActorEntry]:
        """The live entries an index names, in its order (one round trip)."""
        prefix = f"{self._p}a:{realm_id}:"
        replies = await self._redis.run(_READ_INDEX, [index], [prefix])
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
        token = _type_token(target)
        added = await self._redis.run(
            _SUBSCRIBE,
            [self._subs_key(token), self._watching_key(key)],
            [
                f"{key[0]}:{key[1]}",
                subscriber.SerializeToString(),
                token,
                MAX_SUBSCRIPTIONS_PER_ACTOR,
            ],
        )
        if added:
            await self._count_local(key)
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
        token = _type_token(target)
        removed = await self._redis.run(
            _UNSUBSCRIBE,
            [self._subs_key(token), self._watching_key(subscriber)],
            [f"{subscriber[0]}:{subscriber[1]}", token],
        )
        if subscriber in self._local_subscriptions:
            await self._count_local(subscriber)
        return bool(removed)

    async def forget_subscriptions(self, subscriber: ActorKey) -> None:
        self._local_subscriptions.pop(subscriber, None)
        await self._redis.run(
            _FORGET,
            [self._watching_key(subscriber)],
            [f"{self._p}s:", f"{subscriber[0]}:{subscriber[1]}"],
        )

    async def subscribers(self, actr_type: actr_pb2.ActrType) -> list[Subscriber]:
        reply = await self._redis.command(
            "HGETALL", self._subs_key(_type_token(actr_type))
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
