-- Give unfinished tasks back to the queue (a worker stopping past its drain deadline).
-- `deliveries` still counts the claim (it counts claims); `handed_back` counts these
-- returns, which claim.lua does not hold against the task's delivery limit. Each return
-- is announced (task_handed_back) in the task's stream and on the events channel.
-- KEYS: 1 inflight, 2 ready, 3 wake, 4 depth, 5 stats, 6 events channel ('' = none)
-- ARGV: 1 record key prefix, 2 stream key prefix, 3 stream cap, then (id, token, envelope)
--   triples ('' = no event).
-- Returns how many tasks went back.
local released, events = 0, {}
local function int(v)
  return type(v) == 'string' and #v <= 15 and string.match(v, '^%-?%d+$') ~= nil
end
for i = 4, #ARGV, 3 do
  local id, token, event = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[1] .. id
  -- is_lease: a key that is not a hash (written by hand) is not ours to hand back. A record
  -- whose fields do not parse is left to the lease's expiry (claim.lua sets it aside).
  local f = is_lease(key, token) and redis.call('HMGET', key, 'score', 'priority', 'handed_back')
  if f and tonumber(f[1]) and int(f[2]) and (not f[3] or int(f[3])) then
    redis.call('HSET', key, 'status', 'pending', 'lease', '')
    redis.call('HINCRBY', key, 'handed_back', 1)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], f[1], id)
    local r = redis.pcall('HINCRBY', KEYS[4], f[2], 1)
    if type(r) == 'table' and r.err then redis.call('HSET', KEYS[4], f[2], 1) end
    if event ~= '' then
      append_event(ARGV[2] .. id, tonumber(ARGV[3]), event)
      events[#events + 1] = event
    end
    released = released + 1
  end
end
if released > 0 then
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('HINCRBY', KEYS[5], 'handed_back', released)
end
if #events > 0 and KEYS[6] ~= '' then
  redis.call('PUBLISH', KEYS[6], '[' .. table.concat(events, ',') .. ']')
end
return released
