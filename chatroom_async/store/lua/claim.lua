-- Claim up to ARGV[3] ready tasks for one worker, atomically, each with a lease.
-- First moves due retries to the ready set and expired leases back to it (a worker that
-- died loses its tasks to the next claim), so no separate sweeper races the workers.
-- KEYS: 1 ready, 2 inflight, 3 delayed, 4 wake, 5 depth, 6 dead, 7 stats, 8 garbage,
--       9 held (worker id -> tasks its pool holds for a slot, worker/tally.py)
-- ARGV: 1 now, 2 lease deadline, 3 max count, 4 worker id, 5 record key prefix,
--       6 extra deliveries allowed beyond max_retries + 1, 7 result ttl, 8 dead-letter cap,
--       9 sweep: '1' to promote due retries and reclaim expired leases first, '0' to skip
--         that (a busy worker sweeps only when something is due, or now and then)
--       10 ('' = none): the caller's clock minus the server's, in seconds. Given,
--         the call was sent behind a blocking wait on the same connection and runs when the
--         wait ends (worker/fetcher.py): the time is the server's (TIME) shifted by it, not
--         ARGV 1, and the lease keeps its length (ARGV 2 - ARGV 1)
--       11 ('' = every task claimed runs at once): how many of the tasks claimed the worker
--         will start at once; it holds the rest, and they are added to its held count
--       12 '1' to set its held count to them instead of adding (the worker holds nothing
--         else and no other call of its is under way), '0' to add
-- Returns {claimed, dead, next_due, remaining, head_id, head_score, now, server}: claimed
-- is a flat list of (id, spec, priority, max_retries, retry_count, deliveries, score in
-- the ready set, rate_limited, handed_back); dead lists task ids that exceeded their delivery limit or
-- whose record is corrupt (both go to the dead-letter list); next_due is the earliest retry
-- or lease deadline ('' when none, or when not swept); remaining is 1 when ready tasks are
-- left, else 0; head_id and head_score name the first of them ('' when none): a worker
-- holding tasks starts none ordered after it (worker/pool.py); now is the time the claim
-- used (ARGV 1, or the shifted server time) and server the server's own, in seconds.
local unpack = unpack or table.unpack
local now, prefix = tonumber(ARGV[1]), ARGV[5]
local clock = redis.call('TIME')
local server = clock[1] .. '.' .. string.format('%06d', tonumber(clock[2]))
local now_s, deadline_s = ARGV[1], ARGV[2]
if ARGV[10] ~= '' then
  local fresh = tonumber(server) + tonumber(ARGV[10])
  deadline_s = string.format('%.17g', fresh + (tonumber(ARGV[2]) - now))
  now, now_s = fresh, string.format('%.17g', fresh)
end
local extra, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local depth = {}
local function bump(priority, n) depth[priority] = (depth[priority] or 0) + n end

-- No input this script can meet may make it fail half way (Redis keeps the writes a failed
-- script made): every task record is checked before anything is written about it, and an
-- entry that cannot be used is set aside in the garbage list with the reason, as JSON.
local function int(v)  -- an integer field as the package writes it, or nil
  if type(v) == 'string' and #v <= 15 and string.match(v, '^%-?%d+$') then return tonumber(v) end
end
local function num(v)  -- a finite number, or nil
  local n = tonumber(v)
  if n and n == n and n > -math.huge and n < math.huge then return n end
end
local dead = {}
-- Set an unusable entry aside; a hash record of it fails (its waiters and stats see an end).
local function set_aside(id, reason, is_hash)
  redis.call('RPUSH', KEYS[8], cjson.encode({task_id = id, reason = reason}))
  if is_hash then
    local key = prefix .. id
    redis.call('HSET', key, 'status', 'failed', 'completed_at', now_s, 'lease', '', 'error',
      cjson.encode({error_type = 'CorruptTaskError', error_message = reason}))
    redis.call('EXPIRE', key, ttl)
    redis.call('RPUSH', KEYS[6], id)  -- every failed task is a dead letter
    redis.call('HINCRBY', KEYS[7], 'failed_tasks', 1)
    dead[#dead + 1] = id
  end
end
-- The record's fields (HMGET), or nil and why it cannot be read.
local function fields(id, ...)
  local kind = redis.call('TYPE', prefix .. id)
  kind = type(kind) == 'table' and kind.ok or kind
  if kind == 'none' then return nil, 'no task record' end
  if kind ~= 'hash' then return nil, 'the task record is a ' .. kind .. ', not a hash' end
  return redis.call('HMGET', prefix .. id, ...)
end
-- Back to the ready set, if its score and priority are usable.
local function requeue(id, f)
  if not int(f[2]) then set_aside(id, 'priority is not an integer', true); return false end
  if not num(f[1]) then set_aside(id, 'score is not a number', true); return false end
  redis.call('ZADD', KEYS[1], f[1], id)
  bump(f[2], 1)
  return true
end

-- The in-flight set always holds this anchor, scored +inf: a member no task id can be (ids
-- have no spaces) and longer than 64 bytes, so Redis keeps the set in its skiplist
-- encoding. Below 129 members it would otherwise use the compact listpack, where every
-- ZADD parses the fractional score of each member it passes: adding 8 leases to 100 in
-- flight took ~90 us of server time there against ~5 us in the skiplist.
local ANCHOR = '(anchor) keeps this set in the skiplist encoding; no task id has a space'
-- The earliest finite score of a sorted set (the anchor is never one), or nil.
local function head(key)
  local h = redis.call('ZRANGEBYSCORE', key, '-inf', '(inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return h[2] and tonumber(h[2]) or nil
end
-- Sweep a set only when its earliest entry is due: most claims find nothing to move.
local sweep = ARGV[9] ~= '0'
local delayed_head, inflight_head
if sweep then delayed_head, inflight_head = head(KEYS[3]), head(KEYS[2]) end
if delayed_head and delayed_head <= now then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', KEYS[3], id)
    local f, why = fields(id, 'score', 'priority', 'spec')
    if not f then set_aside(id, why, false)
    elseif not f[3] then set_aside(id, 'the task record has no spec', true)
    else requeue(id, f) end
  end
  delayed_head = head(KEYS[3])
end
if inflight_head and inflight_head <= now then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', KEYS[2], id)
    local f, why = fields(id, 'score', 'priority', 'status')
    if not f then set_aside(id, why, false)
    elseif f[3] == 'processing' and requeue(id, f) then
      redis.call('HSET', prefix .. id, 'status', 'pending', 'lease', '')
      redis.call('HINCRBY', KEYS[7], 'reclaimed_tasks', 1)
    end
  end
  inflight_head = head(KEYS[2])
end

-- One claimed entry: checked whole before its first write.
local claimed, leased, scores = {}, {}, {}
local function claim(id)
  local f, why = fields(id, 'spec', 'priority', 'max_retries', 'retry_count', 'deliveries',
                        'status', 'rate_limited', 'handed_back')
  if not f then set_aside(id, why, false); return end
  if not f[1] then set_aside(id, 'the task record has no spec', true); return end
  local priority = int(f[2])
  if f[6] ~= 'pending' and f[6] ~= 'retrying' then  -- finished or cancelled meanwhile
    if priority then bump(f[2], -1) end
    return
  end
  if not priority then set_aside(id, 'priority is not an integer', true); return end
  bump(f[2], -1)
  local max_retries, retries = int(f[3]), int(f[4] or '0')
  local previous, limited = int(f[5] or '0'), int(f[7] or '0')
  local back = int(f[8] or '0')
  if not (max_retries and retries and previous and limited and back) then
    set_aside(id, 'max_retries, retry_count, deliveries, rate_limited or handed_back is not '
              .. 'an integer', true)
    return
  end
  local key, deliveries = prefix .. id, previous + 1
  -- Attempts a provider's rate limit ended are retried on a budget of their own; graceful
  -- hand-backs (release.lua) are claims too, but not held against the limit.
  if deliveries - back > max_retries + 1 + extra + limited then
    redis.call('HSET', key, 'status', 'failed', 'completed_at', now_s, 'lease', '',
      'error', '{"error_type":"DeliveryLimitExceeded","error_message":"delivered ' ..
      deliveries .. ' times; its workers kept dying or losing their lease"}')
    redis.call('EXPIRE', key, ttl)
    redis.call('RPUSH', KEYS[6], id)
    redis.call('HINCRBY', KEYS[7], 'failed_tasks', 1)
    redis.call('HINCRBY', KEYS[7], 'delivery_limit_exceeded', 1)
    dead[#dead + 1] = id
    return
  end
  redis.call('HSET', key, 'status', 'processing', 'started_at', now_s,
             'deliveries', deliveries, 'lease', ARGV[4] .. ':' .. deliveries)
  leased[#leased + 1] = deadline_s; leased[#leased + 1] = id
  local n = #claimed
  claimed[n + 1] = id; claimed[n + 2] = f[1]; claimed[n + 3] = f[2]
  claimed[n + 4] = f[3]; claimed[n + 5] = f[4] or '0'; claimed[n + 6] = deliveries
  claimed[n + 7] = scores[id]  -- the ready set's own, so held tasks compare as it orders
  claimed[n + 8] = limited
  claimed[n + 9] = back
end

-- ZRANGE + ZREM rather than ZPOPMIN: the same atomically here, and fakeredis pops in time
-- that grows with the backlog while these two do not. One id more than wanted is read, and
-- left: whether it is there tells if ready tasks remain, and it is the new head.
local max = tonumber(ARGV[3])
local range = redis.call('ZRANGE', KEYS[1], 0, max, 'WITHSCORES')
local popped = {}
for j = 1, math.min(#range, 2 * max), 2 do
  popped[#popped + 1] = range[j]
  scores[range[j]] = range[j + 1]
end
local more = #range > 2 * max
if #popped > 0 then redis.call('ZREM', KEYS[1], unpack(popped)) end
for _, id in ipairs(popped) do claim(id) end
if #leased > 0 then redis.call('ZADD', KEYS[2], 'inf', ANCHOR, unpack(leased)) end
for priority, n in pairs(depth) do
  -- A count that is not an integer (written by hand) is replaced, not added to.
  if n ~= 0 then
    local r = redis.pcall('HINCRBY', KEYS[5], priority, n)
    if type(r) == 'table' and r.err then redis.call('HSET', KEYS[5], priority, math.max(0, n)) end
  end
end
if #dead > 0 then redis.call('LTRIM', KEYS[6], -tonumber(ARGV[8]), -1) end

if more then
  if #claimed > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], 1) end
else
  redis.call('DEL', KEYS[4])
end

-- The worker's held count (a statistic: a count written by hand is replaced, and no error
-- of it fails the claim).
if ARGV[11] ~= '' then
  local over = math.max(0, #claimed / 9 - tonumber(ARGV[11]))
  if ARGV[12] == '1' then
    if over > 0 then redis.pcall('HSET', KEYS[9], ARGV[4], over)
    else redis.pcall('HDEL', KEYS[9], ARGV[4]) end
  elseif over > 0 then
    local r = redis.pcall('HINCRBY', KEYS[9], ARGV[4], over)
    if type(r) == 'table' and r.err then redis.pcall('HSET', KEYS[9], ARGV[4], over) end
  end
end

-- The earliest retry or lease deadline: an idle worker sleeps until then at most. Leases
-- claimed just now end later than any existing head, so they never come first.
local next_due = delayed_head
if inflight_head and (not next_due or inflight_head < next_due) then next_due = inflight_head end
if sweep and not next_due and #leased > 0 then next_due = tonumber(deadline_s) end
return {claimed, dead, next_due and tostring(next_due) or '', more and 1 or 0,
        more and range[2 * max + 1] or '', more and range[2 * max + 2] or '', now_s, server}
