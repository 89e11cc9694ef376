"""The Lua scripts of :mod:`actrix.core.redis_directory` (one atomic step each).

Kept apart from the directory's Python so each file stays readable; the key
layout they work on is described in that module.
"""

from __future__ import annotations

from actrix.core.redis_client import Script

# KEYS: entry, realm index, type index, counter, the node's actor set.
# ARGV: ttl ms, serial, member in the node set, then field/value pairs.
REGISTER = Script("""
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
UPDATE = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
""")

# KEYS: entry, the node's actor set (used when ARGV[3] is a member).
# ARGV: online '1'/'0', ttl ms or '', member or '', then field/value pairs.
# Returns {previous online flag, fields} or nil.
SET_ONLINE = Script("""
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
REMOVE = Script("""
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
TAKE_OVER = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return nil end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return nil end
local members = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return members
""")

# KEYS: an index. ARGV: the entry key prefix. Every live entry, index order.
READ_INDEX = Script("""
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
SUBSCRIBE = Script("""
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 0
   and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
""")

UNSUBSCRIBE = Script("""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
""")

# KEYS: types of the actor. ARGV: subscription key prefix, member.
FORGET = Script("""
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('HDEL', ARGV[1] .. token, ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
""")

# KEYS: the name claim. ARGV: this process's id, ttl ms. nil when the name is
# (now) this process's; else the id of the other process that holds it.
CLAIM_NAME = Script("""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return nil
""")
