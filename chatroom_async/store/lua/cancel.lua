-- Cancel a task wherever it is: ready, waiting for a retry, or running. The caller read
-- the record first and built the task_cancelled envelope from it; if the task moved on
-- since (another status or delivery), nothing changes and it reads again.
-- KEYS: 1 task record, 2 ready, 3 delayed, 4 inflight, 5 stats, 6 depth, 7 cancel channel,
--       8 task stream, 9 events channel ('' = none)
-- ARGV: 1 now, 2 result ttl, 3 task id, 4 status read ('' = no check), 5 deliveries read,
--       6 stream cap,
--       7 envelope ('' = none), 8 stream ttl (how long the finished task's stream stays)
-- Returns {0} unknown, {0, status} already finished ({0, "corrupt"}: the key is not a
-- task record), {2, status} changed since read,
-- {1, previous status, record...}.
local kind = redis.call('TYPE', KEYS[1])
kind = type(kind) == 'table' and kind.ok or kind
if kind == 'none' then return {0} end
if kind ~= 'hash' then return {0, 'corrupt'} end  -- not a task record: nothing to cancel
local f = redis.call('HMGET', KEYS[1], 'status', 'deliveries')
if not f[1] then return {0, 'corrupt'} end
local status = f[1]
if status == 'completed' or status == 'failed' or status == 'cancelled' then
  return {0, status}
end
if ARGV[4] ~= '' and (status ~= ARGV[4] or (f[2] or '0') ~= ARGV[5]) then
  return {2, status}
end
local priority = redis.call('HGET', KEYS[1], 'priority')
if redis.call('ZREM', KEYS[2], ARGV[3]) == 1 and priority
    and string.match(priority, '^%-?%d+$') and #priority <= 15 then
  local r = redis.pcall('HINCRBY', KEYS[6], priority, -1)  -- a hand-written count: reset it
  if type(r) == 'table' and r.err then redis.call('HSET', KEYS[6], priority, 0) end
end
redis.call('ZREM', KEYS[3], ARGV[3])
local running = redis.call('ZREM', KEYS[4], ARGV[3])
-- Clearing the lease makes the running worker's late result bounce off finish.lua. A
-- cancelled task has no error: an earlier attempt's is no reason for its state.
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[1], 'lease', '',
           'error', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'cancelled_tasks', 1)
-- The running worker hears the cancel before anyone hears the event.
if running == 1 then redis.call('PUBLISH', KEYS[7], ARGV[3]) end
if ARGV[7] ~= '' then
  append_event(KEYS[8], tonumber(ARGV[6]), ARGV[7])
  if KEYS[9] ~= '' then redis.call('PUBLISH', KEYS[9], '[' .. ARGV[7] .. ']') end
end
redis.call('EXPIRE', KEYS[8], ARGV[8])
return {1, status, redis.call('HGETALL', KEYS[1])}
