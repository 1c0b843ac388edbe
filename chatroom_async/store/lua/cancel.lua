-- Cancel a task wherever it is: ready, waiting for a retry, or running.
-- KEYS: 1 task record, 2 ready, 3 delayed, 4 inflight, 5 stats, 6 depth, 7 cancel channel
-- ARGV: 1 now, 2 result ttl, 3 task id
-- Returns {0} unknown, {0, status} already finished ({0, "corrupt"}: the key is not a
-- task record), {1, previous status, record...}.
local kind = redis.call('TYPE', KEYS[1])
kind = type(kind) == 'table' and kind.ok or kind
if kind == 'none' then return {0} end
if kind ~= 'hash' then return {0, 'corrupt'} end  -- not a task record: nothing to cancel
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, 'corrupt'} end
if status == 'completed' or status == 'failed' or status == 'cancelled' then
  return {0, status}
end
local priority = redis.call('HGET', KEYS[1], 'priority')
if redis.call('ZREM', KEYS[2], ARGV[3]) == 1 and priority
    and string.match(priority, '^%-?%d+$') and #priority <= 15 then
  local r = redis.pcall('HINCRBY', KEYS[6], priority, -1)  -- a hand-written count: reset it
  if type(r) == 'table' and r.err then redis.call('HSET', KEYS[6], priority, 0) end
end
redis.call('ZREM', KEYS[3], ARGV[3])
local running = redis.call('ZREM', KEYS[4], ARGV[3])
-- Clearing the lease makes the running worker's late result bounce off finish.lua.
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[1], 'lease', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'cancelled_tasks', 1)
if running == 1 then redis.call('PUBLISH', KEYS[7], ARGV[3]) end
return {1, status, redis.call('HGETALL', KEYS[1])}
