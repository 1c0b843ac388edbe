-- Extend the leases a worker still holds; report the ones it lost.
-- KEYS: 1 inflight.  ARGV: 1 new deadline, 2 record key prefix, then (id, token) pairs.
-- Returns the ids whose lease is no longer this worker's: their runs must stop.
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.pcall('HGET', ARGV[2] .. id, 'lease') == token then  -- pcall: see finish.lua
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
