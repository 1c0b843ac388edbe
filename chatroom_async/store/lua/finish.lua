-- Record the outcomes of a batch of attempts, each only if its worker still holds the lease
-- (a worker whose lease expired cannot overwrite the result of the task's next run).
-- KEYS: 1 inflight, 2 delayed, 3 wake, 4 stats, 5 dead, 6 events channel ('' = none)
-- ARGV: 1 result ttl, 2 record key prefix, 3 origin, 4 dead-letter cap, 5 "started" events
--   to publish ahead of the outcomes' (comma-separated json, '' = none), then per outcome:
--   id, lease token, kind ('completed'|'failed'|'retry'), due (retry time or ''),
--   processing seconds, n, n field/value pairs for the record, event json ('' = none)
-- Returns a list of 1/0: whether each outcome was recorded.
local unpack = unpack or table.unpack
local ttl, prefix = tonumber(ARGV[1]), ARGV[2]
local recorded, events, done = {}, {}, {}
if ARGV[5] ~= '' then events[1] = ARGV[5] end
local completed, failed, retried, proc = 0, 0, 0, 0.0
local i = 6
while i <= #ARGV do
  local id, token, kind, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local seconds, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local first, last = i + 6, i + 5 + 2 * n
  local event = ARGV[last + 1]
  i = last + 2
  local key = prefix .. id
  -- pcall: a key that is not a hash (written by hand) is a lost lease, not a failed batch
  if token ~= '' and redis.pcall('HGET', key, 'lease') == token then
    redis.call('HSET', key, 'lease', '', unpack(ARGV, first, last))
    done[#done + 1] = id
    if kind == 'retry' then
      redis.call('ZADD', KEYS[2], due, id)
      retried = retried + 1
    else
      redis.call('EXPIRE', key, ttl)
      if kind == 'completed' then
        completed = completed + 1
        proc = proc + seconds
      else
        failed = failed + 1
        redis.call('RPUSH', KEYS[5], id)
      end
    end
    if event ~= '' then events[#events + 1] = event end
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
if #events > 0 and KEYS[6] ~= '' then
  redis.call('PUBLISH', KEYS[6],
    '{"origin":' .. cjson.encode(ARGV[3]) .. ',"events":[' .. table.concat(events, ',') .. ']}')
end
return recorded
