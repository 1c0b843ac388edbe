-- Give unfinished tasks back to the queue (a worker stopping past its drain deadline).
-- The interrupted delivery is not counted against the task's delivery limit.
-- KEYS: 1 inflight, 2 ready, 3 wake, 4 depth.  ARGV: 1 record key prefix, then (id, token).
-- Returns how many tasks went back.
local released = 0
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'lease') == token then
    local f = redis.call('HMGET', key, 'score', 'priority')
    redis.call('HSET', key, 'status', 'pending', 'lease', '')
    redis.call('HINCRBY', key, 'deliveries', -1)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], f[1], id)
    redis.call('HINCRBY', KEYS[4], f[2], 1)
    released = released + 1
  end
end
if released > 0 then redis.call('LPUSH', KEYS[3], 1) end
return released
