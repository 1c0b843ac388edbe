-- Send events of tasks: append each to its task's stream and publish them. An event that
-- names a lease token is sent only while that lease is the task's (a worker that lost its
-- task, or whose task was cancelled, sends nothing more about it).
-- KEYS: 1 events channel ('' = none), 2 progress channel ('' = none)
-- ARGV: 1 record key prefix, 2 stream key prefix, 3 stream cap, 4 stream ttl (how long a
--   finished task's stream stays), then per event:
--   task id, lease token ('' = no check), kind, attempt, chunk text, envelope json, where kind
--   is 'event', 'end' (a terminal event: the stream starts to expire) or 'progress'
--   (the chunk text is appended to the record's partial text of that attempt)
-- Returns a list of 1/0: whether each event was sent.
local prefix, sprefix = ARGV[1], ARGV[2]
local cap, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local sent, events, progress = {}, {}, {}
for i = 5, #ARGV, 6 do
  local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local attempt, text, json = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. id
  local ok
  if token == '' then ok = redis.call('EXISTS', key) == 1 else ok = is_lease(key, token) end
  if ok then
    append_event(sprefix .. id, cap, json)
    if kind == 'progress' then
      local f = redis.call('HMGET', key, 'partial_attempt', 'partial')
      if f[1] == attempt and f[2] then text = f[2] .. text end
      redis.call('HSET', key, 'partial', text, 'partial_attempt', attempt)
      progress[#progress + 1] = json
    else
      if kind == 'end' then redis.call('EXPIRE', sprefix .. id, ttl) end
      events[#events + 1] = json
    end
    sent[#sent + 1] = 1
  else
    sent[#sent + 1] = 0
  end
end
if #events > 0 and KEYS[1] ~= '' then
  redis.call('PUBLISH', KEYS[1], '[' .. table.concat(events, ',') .. ']')
end
if #progress > 0 and KEYS[2] ~= '' then
  redis.call('PUBLISH', KEYS[2], '[' .. table.concat(progress, ',') .. ']')
end
return sent
