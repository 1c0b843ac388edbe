-- The provider's limits, shared by every worker of the namespace: requests per minute and
-- tokens per minute as the provider counts them (a bucket of one minute's worth, refilled
-- continuously), calls in flight as leased members of a sorted set, and a pause that a 429's
-- retry_after sets for everyone.
-- The rates are kept as GCRA reservations: `r_tat`/`t_tat` is when the bucket would be full
-- again. A caller is given its place in line at once (the wait until its turn, and its turn
-- is taken), so waiting workers go in the order they asked, with no stampede when a bucket
-- refills. A bucket with capacity C (one minute) and interval T = 60 / per_minute lets a
-- call of cost c go when tat - (C - c) * T <= now, as the provider's own bucket would.
-- KEYS: 1 limiter hash, 2 calls zset (member = call id, score = lease deadline), 3 free list
-- ARGV: 1 op, 2 now (the caller's clock, seconds), then per op:
--   reserve: 3 token cost, 4 rpm, 5 tpm (0 = no limit)
--            -> {0, seconds}: go after that many seconds (0: now); the turn is taken
--               {1, seconds}: paused (a 429's retry_after): ask again after that long
--   slot:    3 call id, 4 max calls in flight, 5 call lease seconds
--            -> {0, ''} a call slot is held; {1, seconds} paused;
--               {2, seconds} every slot is taken: wait for a release (at most seconds)
--   release: 3 call id, 4 max calls
--   pause:   3 until (seconds on the same clock)
local op, now = ARGV[1], tonumber(ARGV[2])

local function paused()
  local until_ = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0') or 0
  if until_ > now then return until_ - now end
  return nil
end

-- Reserve a call of `cost` on the bucket `field` allowing `per_minute`; return the wait.
local function reserve(field, cost, per_minute)
  local interval = 60.0 / per_minute
  if cost > per_minute then cost = per_minute end  -- a charge above the capacity waits for a full bucket
  local tat = tonumber(redis.call('HGET', KEYS[1], field) or '') or now
  if tat < now then tat = now end
  local go = tat - (per_minute - cost) * interval
  redis.call('HSET', KEYS[1], field, tat + cost * interval)
  -- A millisecond late rather than a rounding error early: the provider refuses early calls.
  if go > now then return go - now + 0.001 end
  return 0
end

if op == 'pause' then
  local until_ = tonumber(ARGV[3])
  local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0') or 0
  if until_ > current then redis.call('HSET', KEYS[1], 'paused_until', ARGV[3]) end
  return 1
end

if op == 'release' then
  local removed = redis.call('ZREM', KEYS[2], ARGV[3])
  local maxc = tonumber(ARGV[4])
  if removed == 1 and maxc > 0 and redis.call('LLEN', KEYS[3]) < maxc then
    redis.call('LPUSH', KEYS[3], 1)  -- wakes one worker waiting for a call slot
  end
  return removed
end

local pause = paused()
if pause then return {1, tostring(pause)} end

if op == 'reserve' then
  local cost, rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local wait = 0
  if rpm > 0 then wait = math.max(wait, reserve('r_tat', 1, rpm)) end
  if tpm > 0 then wait = math.max(wait, reserve('t_tat', cost, tpm)) end
  return {0, tostring(wait)}
end

-- slot
local id, maxc, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- leases of calls whose worker died
  if redis.call('ZCARD', KEYS[2]) >= maxc then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, tostring(tonumber(first[2]) - now)}
  end
  redis.call('ZADD', KEYS[2], now + lease, id)
end
return {0, ''}
