-- Give unfinished tasks back to the queue (a worker stopping past its drain deadline).
-- The interrupted delivery is not counted against the task's delivery limit.
-- KEYS: 1 inflight, 2 ready, 3 wake, 4 depth.  ARGV: 1 record key prefix, then (id, token).
-- Returns how many tasks went back.
local released = 0
local function int(v)
  return type(v) == 'string' and #v <= 15 and string.match(v, '^%-?%d+$') ~= nil
end
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. id
  -- pcall: a key that is not a hash (written by hand) is not ours to hand back. A record
  -- whose fields do not parse is left to the lease's expiry (claim.lua sets it aside).
  if redis.pcall('HGET', key, 'lease') == token then
    local f = redis.call('HMGET', key, 'score', 'priority', 'deliveries')
    if tonumber(f[1]) and int(f[2]) and int(f[3]) then
      redis.call('HSET', key, 'status', 'pending', 'lease', '')
      redis.call('HINCRBY', key, 'deliveries', -1)
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZADD', KEYS[2], f[1], id)
      local r = redis.pcall('HINCRBY', KEYS[4], f[2], 1)
      if type(r) == 'table' and r.err then redis.call('HSET', KEYS[4], f[2], 1) end
      released = released + 1
    end
  end
end
if released > 0 then redis.call('LPUSH', KEYS[3], 1) end
return released
