"""The Lua scripts of the Redis Cluster feature store (:mod:`reco.adapters.redis_cluster`).

A script on a Cluster runs on the node of its keys' slot and may touch only the keys it
declares in ``KEYS``, all of one slot: none of these builds a key name. A batch's writes
are one ``GROUP_APPLY`` per slot group, given every key of its group that the batch
writes; the payload names them by their index in ``KEYS``. The list, profile, session and
dedupe writes are the single store's (:data:`reco.adapters.redis_scripts.HELPERS`).

Replies are tables whose first element is a status below; a script that finds its group
contradicting what it was given (a group at another landmark, offsets of a batch half
there) writes nothing and says so, and the store raises ``JournalError``.
"""

from __future__ import annotations

from typing import Final

from reco.adapters.redis_scripts import APPLIED, OTHER_LANDMARK, script

SKIPPED, BROKEN = 2, -3
STARTED, ALREADY, REFUSED, UNFINISHED = 1, 0, -1, -2
"""``MOVE_START``: a move begun (the caller holds the lease), the landmark already the new
one, the factors relative to a landmark the store no longer holds, another move not done."""

# Step a, on the meta slot. KEYS: landmark, offsets, pending, moved, experiments. ARGV: batch
# id, the batch's landmark, {"offsets": [[partition, offset after the batch]], "base":
# [[partition, offset the batch starts at]], "experiments": {counter: increment}} as JSON,
# the journal ('' when the batch writes nothing). The experiments' counters are written
# here, with the offsets, rather than by a group: they are one hash for the whole store.
# Reply: {APPLIED} | {STALE or RESET, partition, stored offset or -1} | {OTHER_LANDMARK,
# stored landmark} (also while a landmark move is not done: nothing is journaled then, so
# that no group is written at a landmark it has not reached).
_JOURNAL = f"""
local d = cjson.decode(ARGV[3])
local refused = offsets_refusal(KEYS[2], d.offsets, d.base)
if refused then return refused end
local current = call('GET', KEYS[1])
if not current then
  call('SET', KEYS[1], ARGV[2])
elseif tonumber(current) ~= tonumber(ARGV[2]) or call('HGET', KEYS[4], 'done') == '0' then
  return {{{OTHER_LANDMARK}, current}}
end
if ARGV[4] ~= '' then call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
for counter, by in pairs(d.experiments) do call('HINCRBY', KEYS[5], counter, by) end
for _, po in ipairs(d.offsets) do call('HSET', KEYS[2], po[1], po[2]) end
return {{{APPLIED}}}
"""

# Step b, one per slot group. KEYS: the group's applied offsets, its scale, then whatever the
# payload names by index. ARGV: the payload as JSON, then the profile and session JSONs it
# names by index. Reply: {APPLIED, session dropped by the cap, ...} | {SKIPPED} (the group
# holds the batch: a replay) | {BROKEN, what, ...}.
_GROUP_APPLY = f"""
local d = cjson.decode(ARGV[1])
local MAX_RELATED, MAX_POPULAR = d.limits[1], d.limits[2]
local MAX_SESSIONS, WINDOW = d.limits[3], d.limits[4]
local PROFILE_TTL, SESSION_TTL = d.limits[5], d.limits[6]
local SLACK, MAX_NEIGHBOURS = d.limits[7], d.limits[8]

-- A batch is written to the group whole, its offsets with it: the group holds it when its
-- offsets reach the batch's for every partition, and none of it when for none.
local ahead = 0
for _, po in ipairs(d.offsets) do
  local stored = call('HGET', KEYS[1], po[1])
  if stored and tonumber(stored) >= po[2] then ahead = ahead + 1 end
end
if ahead > 0 then
  if ahead == #d.offsets then return {{{SKIPPED}}} end
  return {{{BROKEN}, 'offsets', cjson.encode(call('HGETALL', KEYS[1]))}}
end

-- Values are relative to the group's landmark. A payload folded against the landmark
-- before the group's last move (journaled before it) is scaled by that move's factors.
local coview_factor, popularity_factor = 1, 1
local landmark = call('HGET', KEYS[2], 'landmark')
if landmark and tonumber(landmark) ~= d.landmark then
  local from = call('HGET', KEYS[2], 'from')
  if not from or tonumber(from) ~= d.landmark then
    return {{{BROKEN}, 'landmark', landmark}}
  end
  coview_factor = tonumber(call('HGET', KEYS[2], 'coview'))
  popularity_factor = tonumber(call('HGET', KEYS[2], 'popularity'))
elseif not landmark then
  call('HSET', KEYS[2], 'landmark', d.landmark)
end

for _, op in ipairs(d.coview) do add(KEYS[op[1]], op[2], MAX_RELATED, SLACK, coview_factor) end
for _, op in ipairs(d.sequence) do add(KEYS[op[1]], op[2], MAX_RELATED, SLACK, coview_factor) end
for _, op in ipairs(d.popularity) do
  add(KEYS[op[1]], op[2], MAX_POPULAR, SLACK, popularity_factor)
end
-- Journals written before the recent weights existed have none.
for _, op in ipairs(d.recent or {{}}) do
  recent(KEYS[op[1]], KEYS[op[2]], op[3], op[4], op[5], MAX_POPULAR, SLACK)
end
for _, op in ipairs(d.index) do index(KEYS[op[1]], op[2], MAX_NEIGHBOURS, SLACK) end
for _, u in ipairs(d.users) do write_user(KEYS[u[1]], ARGV[u[3]], u[2], PROFILE_TTL) end

local reply = {{{APPLIED}}}
if #d.states > 0 then
  local ids = {{}}
  for i, s in ipairs(d.states) do
    write_session(KEYS[s[1]], ARGV[s[3]], SESSION_TTL)
    ids[i] = s[2]
  end
  -- A dropped session's hash is not among KEYS: it is listed in the group's dropped set,
  -- and the store deletes it next (SWEEP).
  index_sessions(KEYS[d.clock], KEYS[d.sessions], ids, MAX_SESSIONS, function(session)
    call('SADD', KEYS[d.dropped], session)
    reply[#reply + 1] = session
  end)
end
if #d.events > 0 then remember(KEYS[d.clock], KEYS[d.seen], d.events, WINDOW) end

for _, po in ipairs(d.offsets) do call('HSET', KEYS[1], po[1], po[2]) end
return reply
"""

# After GROUP_APPLY dropped sessions. KEYS: the group's dropped set, its sessions index, then
# the hash of each session of ARGV (same order). A session written again since it was
# dropped is back in the index and keeps its hash. Reply: hashes deleted.
_SWEEP = """
local deleted = 0
for i = 3, #KEYS do
  local session = ARGV[i - 2]
  if not call('ZSCORE', KEYS[2], session) then deleted = deleted + call('DEL', KEYS[i]) end
  call('SREM', KEYS[1], session)
end
return deleted
"""

# A landmark move begins, on the meta slot. KEYS: landmark, moved, mover (the lease).
# ARGV: the new landmark, co-view factor, popularity factor, the landmark the factors are
# relative to ('' for any), the mover's token, the lease in ms. Reply: {status}.
_MOVE_START = f"""
local current = call('GET', KEYS[1])
if current and tonumber(current) == tonumber(ARGV[1]) then return {{{ALREADY}}} end
if ARGV[4] ~= '' and (not current or tonumber(current) ~= tonumber(ARGV[4])) then
  return {{{REFUSED}}}
end
if call('HGET', KEYS[2], 'done') == '0' then return {{{UNFINISHED}}} end
call('SET', KEYS[1], ARGV[1])
call('HSET', KEYS[2], 'from', current or '', 'to', ARGV[1], 'coview', tonumber(ARGV[2]),
  'popularity', tonumber(ARGV[3]), 'done', '0')
call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
return {{{STARTED}}}
"""

# Who finishes a move not done. KEYS: moved, mover. ARGV: token, lease in ms. Reply: {0}
# when no move waits, {-1} when another process holds the lease, else {1, from, to,
# co-view factor, popularity factor}: the caller holds the lease (taken or renewed).
_MOVE_LEASE = """
local move = call('HMGET', KEYS[1], 'from', 'to', 'coview', 'popularity', 'done')
if move[5] ~= '0' then return {0} end
local holder = call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {-1} end
call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, move[1], move[2], move[3], move[4]}
"""

# One slot group's share of a move. KEYS: the group's scale, its co-view and sequence lists,
# then its popularity lists. ARGV: the landmark moved from ('' for none), to, co-view
# factor, popularity factor, how many co-view and sequence lists. Reply: {values rescaled}
# | {-1} (the group moved already) | {BROKEN, 'landmark', the group's}.
_MOVE_GROUP = f"""
local landmark = call('HGET', KEYS[1], 'landmark')
if landmark and tonumber(landmark) == tonumber(ARGV[2]) then return {{-1}} end
if landmark and (ARGV[1] == '' or tonumber(landmark) ~= tonumber(ARGV[1])) then
  return {{{BROKEN}, 'landmark', landmark}}
end
local coview, popularity, lists = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local scaled = 0
for i = 2, #KEYS do
  local factor = popularity
  if i <= 1 + lists then factor = coview end
  -- The multiplication runs in C, several times faster than a ZADD per member from Lua.
  scaled = scaled + call('ZUNIONSTORE', KEYS[i], 1, KEYS[i], 'WEIGHTS', factor)
end
call('HSET', KEYS[1], 'landmark', ARGV[2])
if ARGV[1] ~= '' then
  call('HSET', KEYS[1], 'from', ARGV[1], 'coview', coview, 'popularity', popularity)
end
return {{scaled}}
"""

# The move is done. KEYS: moved, mover. ARGV: the landmark moved to, the token. Reply: {1}.
_MOVE_DONE = """
if call('HGET', KEYS[1], 'to') == ARGV[1] then call('HSET', KEYS[1], 'done', '1') end
if call('GET', KEYS[2]) == ARGV[2] then call('DEL', KEYS[2]) end
return {1}
"""

JOURNAL: Final = script(_JOURNAL)
GROUP_APPLY: Final = script(_GROUP_APPLY)
SWEEP: Final = script(_SWEEP)
MOVE_START: Final = script(_MOVE_START)
MOVE_LEASE: Final = script(_MOVE_LEASE)
MOVE_GROUP: Final = script(_MOVE_GROUP)
MOVE_DONE: Final = script(_MOVE_DONE)
