-- Claim up to ARGV[3] ready tasks for one worker, atomically, each with a lease.
-- First moves due retries to the ready set and expired leases back to it (a worker that
-- died loses its tasks to the next claim), so no separate sweeper races the workers.
-- KEYS: 1 ready, 2 inflight, 3 delayed, 4 wake, 5 depth, 6 dead, 7 stats, 8 garbage
-- ARGV: 1 now, 2 lease deadline, 3 max count, 4 worker id, 5 record key prefix,
--       6 extra deliveries allowed beyond max_retries + 1, 7 result ttl, 8 dead-letter cap,
--       9 sweep: '1' to promote due retries and reclaim expired leases first, '0' to skip
--         that (a busy worker sweeps only when something is due, or now and then)
-- Returns {claimed, dead, next_due, remaining}: claimed is a flat list of
-- (id, spec, priority, max_retries, retry_count, deliveries, score); dead lists task ids that
-- exceeded their delivery limit; next_due is the earliest retry or lease deadline ('' when
-- none, or when not swept); remaining is 1 when ready tasks are left, else 0.
local unpack = unpack or table.unpack
local now, prefix = tonumber(ARGV[1]), ARGV[5]
local depth = {}
local function bump(priority, n) depth[priority] = (depth[priority] or 0) + n end

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
    local f = redis.call('HMGET', prefix .. id, 'score', 'priority')
    if f[1] then redis.call('ZADD', KEYS[1], f[1], id); bump(f[2], 1) end
  end
  delayed_head = head(KEYS[3])
end
if inflight_head and inflight_head <= now then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', KEYS[2], id)
    local key = prefix .. id
    local f = redis.call('HMGET', key, 'score', 'priority', 'status')
    if f[1] and f[3] == 'processing' then
      redis.call('HSET', key, 'status', 'pending', 'lease', '')
      redis.call('ZADD', KEYS[1], f[1], id)
      bump(f[2], 1)
      redis.call('HINCRBY', KEYS[7], 'reclaimed_tasks', 1)
    end
  end
  inflight_head = head(KEYS[2])
end

local claimed, dead, leased = {}, {}, {}
-- ZRANGE + ZREM rather than ZPOPMIN: the same atomically here, and fakeredis pops in time
-- that grows with the backlog while these two do not. One id more than wanted is read, and
-- left: whether it is there tells if ready tasks remain.
local max = tonumber(ARGV[3])
local popped = redis.call('ZRANGE', KEYS[1], 0, max)
local more = #popped > max
if more then popped[#popped] = nil end
if #popped > 0 then redis.call('ZREM', KEYS[1], unpack(popped)) end
local extra, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
for _, id in ipairs(popped) do
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'spec', 'priority', 'max_retries', 'retry_count',
                       'deliveries', 'status', 'score')
  if not f[1] then
    -- A ready entry without a record: set it aside, never hand it to a worker.
    redis.call('RPUSH', KEYS[8], id)
  else
    bump(f[2], -1)
    if f[6] == 'pending' or f[6] == 'retrying' then
      local deliveries = tonumber(f[5] or '0') + 1
      if deliveries > tonumber(f[3] or '0') + 1 + extra then
        redis.call('HSET', key, 'status', 'failed', 'completed_at', ARGV[1], 'lease', '',
          'error', '{"error_type":"DeliveryLimitExceeded","error_message":"delivered ' ..
          deliveries .. ' times; its workers kept dying or losing their lease"}')
        redis.call('EXPIRE', key, ttl)
        redis.call('RPUSH', KEYS[6], id)
        redis.call('HINCRBY', KEYS[7], 'failed_tasks', 1)
        redis.call('HINCRBY', KEYS[7], 'dead_lettered', 1)
        dead[#dead + 1] = id
      else
        redis.call('HSET', key, 'status', 'processing', 'started_at', ARGV[1],
                   'deliveries', deliveries, 'lease', ARGV[4] .. ':' .. deliveries)
        leased[#leased + 1] = ARGV[2]; leased[#leased + 1] = id
        local n = #claimed
        claimed[n + 1] = id; claimed[n + 2] = f[1]; claimed[n + 3] = f[2]
        claimed[n + 4] = f[3]; claimed[n + 5] = f[4]; claimed[n + 6] = deliveries
        claimed[n + 7] = f[7] or ''  -- only orders held tasks: a bad one is no reason to stop
      end
    end
  end
end
if #leased > 0 then redis.call('ZADD', KEYS[2], 'inf', ANCHOR, unpack(leased)) end
for priority, n in pairs(depth) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[5], priority, n) end
end
if #dead > 0 then redis.call('LTRIM', KEYS[6], -tonumber(ARGV[8]), -1) end

if more then
  if #claimed > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], 1) end
else
  redis.call('DEL', KEYS[4])
end

-- The earliest retry or lease deadline: an idle worker sleeps until then at most. Leases
-- claimed just now end later than any existing head, so they never come first.
local next_due = delayed_head
if inflight_head and (not next_due or inflight_head < next_due) then next_due = inflight_head end
if sweep and not next_due and #leased > 0 then next_due = tonumber(ARGV[2]) end
return {claimed, dead, next_due and tostring(next_due) or '', more and 1 or 0}
