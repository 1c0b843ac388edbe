-- Record the outcomes of a batch of attempts, each only if its worker still holds the lease
-- (a worker whose lease expired cannot overwrite the result of the task's next run).
-- Each recorded outcome's event, and first the "started" events given (each only while its
-- lease holds), go to the tasks' streams and out in one message. Envelopes come pre-built.
-- KEYS: 1 inflight, 2 delayed, 3 wake, 4 stats, 5 dead, 6 events channel ('' = none),
--   7 held (worker id -> tasks its pool holds for a slot, worker/tally.py)
-- ARGV: 1 result ttl, 2 record key prefix, 3 stream key prefix, 4 dead-letter cap,
--   5 stream cap, 6 stream ttl (how long a finished task's stream stays),
--   7 worker id, 8 what to add to its held count (an integer, usually 0),
--   9 number S of "started" events, then S (id, lease token, envelope),
--   then per outcome: id, lease token, kind ('completed'|'failed'|'retry'), due (retry time
--   or ''), processing seconds, n, n field/value pairs for the record, envelope ('' = none)
-- Returns a list of 1/0: whether each outcome was recorded.
local unpack = unpack or table.unpack
local ttl, prefix, sprefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local cap, stream_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local recorded, events, done = {}, {}, {}
local i = 10 + 3 * tonumber(ARGV[9])
for s = 10, i - 1, 3 do
  local id = ARGV[s]
  if is_lease(prefix .. id, ARGV[s + 1]) then
    append_event(sprefix .. id, cap, ARGV[s + 2])
    events[#events + 1] = ARGV[s + 2]
  end
end
local completed, failed, retried, proc = 0, 0, 0, 0.0
while i <= #ARGV do
  local id, token, kind, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local seconds, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local first, last = i + 6, i + 5 + 2 * n
  local event = ARGV[last + 1]
  i = last + 2
  local key = prefix .. id
  if token ~= '' and is_lease(key, token) then
    redis.call('HSET', key, 'lease', '', unpack(ARGV, first, last))
    done[#done + 1] = id
    if event ~= '' then
      append_event(sprefix .. id, cap, event)
      events[#events + 1] = event
    end
    if kind == 'retry' then
      redis.call('ZADD', KEYS[2], due, id)
      retried = retried + 1
    else
      redis.call('EXPIRE', key, ttl)
      redis.call('EXPIRE', sprefix .. id, stream_ttl)
      if kind == 'completed' then
        completed = completed + 1
        proc = proc + seconds
      else
        failed = failed + 1
        redis.call('RPUSH', KEYS[5], id)
      end
    end
    recorded[#recorded + 1] = 1
  else
    recorded[#recorded + 1] = 0
  end
end
if #done > 0 then redis.call('ZREM', KEYS[1], unpack(done)) end
if completed > 0 then
  redis.call('HINCRBY', KEYS[4], 'completed_tasks', completed)
  redis.call('HINCRBYFLOAT', KEYS[4], 'processing_time_sum', proc)
end
if failed > 0 then
  redis.call('HINCRBY', KEYS[4], 'failed_tasks', failed)
  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[4]), -1)
end
if retried > 0 then
  redis.call('HINCRBY', KEYS[4], 'retried_tasks', retried)
  -- Idle workers block until the earliest due time they knew of; this one may be sooner.
  if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], 1) end
end
-- The worker's held count, in the same step as the leases removed above (a statistic: no
-- error of it fails the call).
local held = tonumber(ARGV[8])
if held ~= 0 then redis.pcall('HINCRBY', KEYS[7], ARGV[7], held) end
if #events > 0 and KEYS[6] ~= '' then
  redis.call('PUBLISH', KEYS[6], '[' .. table.concat(events, ',') .. ']')
end
return recorded
