"""The Lua scripts of the Redis feature store: the processor's writes, which must be atomic.

A script runs alone in Redis, so each is atomic; redis-py sends it once (SCRIPT LOAD) and
then only its SHA (EVALSHA). The single store's scripts start with the key names of
:func:`reco.adapters.redis_keys.lua_prelude` and take the key prefix as ``ARGV[1]``; the
Cluster store's (:mod:`reco.adapters.redis_cluster_scripts`) name no key themselves. Both
write through the helpers of :data:`HELPERS`, so that a list, a profile or a session is
written alike on either.

Scores are never turned into text by Lua's ``tostring`` (14 digits): they travel as Lua
numbers, which Redis formats with 17 significant digits, or as the strings Redis returned.
A failing command inside a script leaves the commands before it applied, so each script
checks what could fail before its first write.
"""

from __future__ import annotations

from typing import Final

from reco.adapters.redis_keys import lua_fields, lua_prelude

# Members per ZADD inside the scripts: Lua's unpack() fails beyond ~8000 values.
CHUNK: Final = 1000

APPLIED, STALE, OTHER_LANDMARK, RESET = 1, 0, -1, -2

# Lua functions every write script shares; each takes the keys it writes as arguments.
HELPERS: Final = (
    lua_fields()
    + f"""
local call = redis.call

-- The compare-and-set of a batch's offsets (see FeatureStore.apply): each partition must
-- be stored exactly at the batch's base offset (absent when the writer expects nothing
-- applied); ahead is STALE, absent or behind is RESET. A refusal's reply, or nil.
local function offsets_refusal(key, offsets, bases)
  local base = {{}}
  for _, pb in ipairs(bases) do base[pb[1]] = pb[2] end
  for _, po in ipairs(offsets) do
    -- HGET answers false, not nil, for a missing field.
    local stored = call('HGET', key, po[1])
    local want = base[po[1]]
    if stored then stored = tonumber(stored) else stored = nil end
    if stored ~= want then
      if stored == nil or (want ~= nil and stored < want) then
        return {{{RESET}, po[1], stored or -1}}
      end
      return {{{STALE}, po[1], stored}}
    end
  end
  return nil
end

-- Adds each increment, times factor, then trims the list to its cap's strongest once it is
-- slack times over it.
local function add(key, increments, cap, slack, factor)
  for member, by in pairs(increments) do
    call('ZINCRBY', key, by * factor, member)
  end
  local n = call('ZCARD', key)
  if n > cap * slack then
    call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
  end
end

-- One time bucket's recent weights into its ring slot (reco.signals.trend): the slot is
-- emptied first when it held an older bucket; a bucket older than the slot's is dropped.
local function recent(ring, key, slot, bucket, increments, cap, slack)
  local held = call('HGET', ring, slot)
  if held and tonumber(held) > bucket then return end
  if not held or tonumber(held) < bucket then
    call('DEL', key)
    call('HSET', ring, slot, bucket)
  end
  add(key, increments, cap, slack, 1)
end

-- The neighbour index: a session's later activity replaces its score under the item.
local function index(key, sessions, cap, slack)
  local args = {{}}
  for session, ts in pairs(sessions) do
    args[#args + 1] = ts
    args[#args + 1] = session
    if #args >= 2 * {CHUNK} then
      call('ZADD', key, unpack(args))
      args = {{}}
    end
  end
  if #args > 0 then call('ZADD', key, unpack(args)) end
  local n = call('ZCARD', key)
  if n > cap * slack then
    call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
  end
end

-- A profile, its current session (a string, else none) and the version readers cache by.
local function write_user(key, profile, session, ttl)
  if type(session) == 'string' then
    call('HSET', key, F_PROFILE, profile, F_SESSION, session)
  else
    call('HSET', key, F_PROFILE, profile)
    call('HDEL', key, F_SESSION)
  end
  call('HINCRBY', key, F_VERSION, 1)
  call('EXPIRE', key, ttl)
end

local function write_session(key, state, ttl)
  call('HSET', key, F_STATE, state)
  call('HINCRBY', key, F_VERSION, 1)
  call('EXPIRE', key, ttl)
end

-- Scores members by the write clock, in order, so that the oldest go first when trimmed.
-- Returns how many the zset holds.
local function stamp(clock, key, members, flag)
  local at = call('INCRBY', clock, #members) - #members
  for first = 1, #members, {CHUNK} do
    local args = {{flag}}
    for i = first, math.min(first + {CHUNK} - 1, #members) do
      args[#args + 1] = at + i
      args[#args + 1] = members[i]
    end
    call('ZADD', key, unpack(args))
  end
  return call('ZCARD', key)
end

-- Stamps the sessions written, then drops the least recently written beyond the cap:
-- each dropped id goes to drop(id), which deletes its hash or schedules it.
local function index_sessions(clock, key, ids, cap, drop)
  local excess = stamp(clock, key, ids, 'GT') - cap
  if excess > 0 then
    local dropped = call('ZPOPMIN', key, excess)
    for i = 1, #dropped, 2 do drop(dropped[i]) end
  end
end

-- The dedupe window. NX: an id seen before keeps its place, as in the in-memory store.
local function remember(clock, key, ids, window)
  if window > 0 and #ids > 0 then
    local excess = stamp(clock, key, ids, 'NX') - window
    if excess > 0 then call('ZREMRANGEBYRANK', key, 0, excess - 1) end
  end
end
"""
)

# ARGV: prefix, landmark, max related, max popular, max sessions, dedupe window, profile TTL,
# session TTL, trim slack, sessions per item of the neighbour index, the delta as JSON, then
# one JSON per profile and per session in the delta's order. Reply: {APPLIED} |
# {STALE or RESET, partition, stored offset or -1} | {OTHER_LANDMARK, stored landmark}.
# Offsets and landmark are checked before any write.
_APPLY = f"""
local LANDMARK = ARGV[2]
local MAX_RELATED, MAX_POPULAR = tonumber(ARGV[3]), tonumber(ARGV[4])
local MAX_SESSIONS, WINDOW = tonumber(ARGV[5]), tonumber(ARGV[6])
local PROFILE_TTL, SESSION_TTL = tonumber(ARGV[7]), tonumber(ARGV[8])
local SLACK, MAX_NEIGHBOURS = tonumber(ARGV[9]), tonumber(ARGV[10])
local d = cjson.decode(ARGV[11])
local blob = 11 -- profile JSONs, then session JSONs, follow in ARGV

local refused = offsets_refusal(K_OFFSETS, d.offsets, d.base)
if refused then return refused end
local current = call('GET', K_LANDMARK)
if not current then
  call('SET', K_LANDMARK, LANDMARK)
elseif tonumber(current) ~= tonumber(LANDMARK) then
  return {{{OTHER_LANDMARK}, current}}
end

for item, partners in pairs(d.coview) do add(k_coview(item), partners, MAX_RELATED, SLACK, 1) end
for item, nexts in pairs(d.sequence) do add(k_sequence(item), nexts, MAX_RELATED, SLACK, 1) end
add(K_POPULAR, d.popularity, MAX_POPULAR, SLACK, 1)
for category, items in pairs(d.category_popularity) do
  add(k_category(category), items, MAX_POPULAR, SLACK, 1)
end
for _, r in ipairs(d.recent) do
  recent(K_RECENT, k_recent(r[2]), r[2], r[1], r[3], MAX_POPULAR, SLACK)
end
for item, sessions in pairs(d.index) do
  index(k_neighbours(item), sessions, MAX_NEIGHBOURS, SLACK)
end

for _, user in ipairs(d.users) do
  blob = blob + 1
  write_user(k_user(user[1]), ARGV[blob], user[2], PROFILE_TTL)
end

if #d.sessions > 0 then
  for i, session in ipairs(d.sessions) do
    write_session(k_session(session), ARGV[blob + i], SESSION_TTL)
  end
  index_sessions(K_CLOCK, K_SESSIONS, d.sessions, MAX_SESSIONS, function(session)
    call('DEL', k_session(session))
  end)
end

remember(K_CLOCK, K_SEEN, d.event_ids, WINDOW)
for counter, by in pairs(d.experiments) do call('HINCRBY', K_EXPERIMENTS, counter, by) end

for _, po in ipairs(d.offsets) do call('HSET', K_OFFSETS, po[1], po[2]) end
return {{{APPLIED}}}
"""

# ARGV: prefix, number of users, the user ids, then session ids. Reply: {profile JSON or nil
# per user, {session JSON, ...}} for the sessions asked for and the users' current ones.
_LOAD_STATES = """
local USERS = tonumber(ARGV[2])
local profiles, wanted, order = {}, {}, {}
local function want(session)
  if not wanted[session] then
    wanted[session] = true
    order[#order + 1] = session
  end
end
for i = 1, USERS do
  local h = call('HMGET', k_user(ARGV[2 + i]), F_PROFILE, F_SESSION)
  profiles[i] = h[1]
  if h[1] and h[2] then want(h[2]) end
end
for i = 3 + USERS, #ARGV do want(ARGV[i]) end
local states = {}
for _, session in ipairs(order) do
  local state = call('HGET', k_session(session), F_STATE)
  if state then states[#states + 1] = state end
end
return {profiles, states}
"""

# ARGV: prefix, new landmark, co-view factor, popularity factor, SCAN patterns of co-view,
# sequence and category lists, the landmark the factors are relative to ('' for any).
# Reply: values rescaled, or -1 when the landmark was already the new one (a retried call)
# or is no longer the one the factors start from (another processor moved it).
_RESCALE = """
local LANDMARK = ARGV[2]
local COVIEW_FACTOR, POPULARITY_FACTOR = tonumber(ARGV[3]), tonumber(ARGV[4])
local current = call('GET', K_LANDMARK)
if current and tonumber(current) == tonumber(LANDMARK) then return -1 end
if ARGV[8] ~= '' and (not current or tonumber(current) ~= tonumber(ARGV[8])) then return -1 end

local done, scaled = {}, 0
local function scale(key, factor)
  if done[key] then return end -- SCAN may return a key twice
  done[key] = true
  -- The multiplication runs in C, several times faster than a ZADD per member from Lua.
  scaled = scaled + call('ZUNIONSTORE', key, 1, key, 'WEIGHTS', factor)
end
local function scan(pattern, factor)
  local cursor = '0'
  repeat
    local page = call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000, 'TYPE', 'zset')
    cursor = page[1]
    for _, key in ipairs(page[2]) do scale(key, factor) end
  until cursor == '0'
end
scan(ARGV[5], COVIEW_FACTOR)
scan(ARGV[6], COVIEW_FACTOR)
scale(K_POPULAR, POPULARITY_FACTOR)
scan(ARGV[7], POPULARITY_FACTOR)
call('SET', K_LANDMARK, LANDMARK)
return scaled
"""


def script(body: str, *, read_only: bool = False, prelude: str = "") -> str:
    """A script: the shebang, ``prelude``, the shared :data:`HELPERS`, then ``body``.

    ``no-writes`` lets the processor's state reads run on a replica and while Redis is over
    ``maxmemory``; a script without it is refused up front in that case, before any write.
    """
    shebang = "#!lua flags=no-writes\n" if read_only else "#!lua\n"
    return shebang + prelude + HELPERS + body


APPLY: Final = script(_APPLY, prelude=lua_prelude())
LOAD_STATES: Final = script(_LOAD_STATES, read_only=True, prelude=lua_prelude())
RESCALE: Final = script(_RESCALE, prelude=lua_prelude())
