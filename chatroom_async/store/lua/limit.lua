-- The provider's limits, shared by every worker of the namespace: requests per minute and
-- tokens per minute as continuous-refill buckets (capacity one minute's worth, as providers
-- count them), calls in flight as leased members of a sorted set, and a pause that a 429's
-- retry_after sets for everyone.
-- KEYS: 1 limiter hash, 2 calls zset (member = call id, score = lease deadline), 3 free list
-- ARGV: 1 op, 2 now (the caller's clock, seconds), then per op:
--   acquire: 3 call id, 4 token cost, 5 rpm, 6 tpm, 7 max calls in flight (0 = no limit),
--            8 call lease seconds
--            -> {0, ''} granted; {1, seconds} wait for the buckets or a pause;
--               {2, seconds} every call slot is taken: wait for a release (at most seconds)
--   release: 3 call id, 4 tokens to give back (charged but not used), 5 tpm, 6 max calls
--   pause:   3 until (seconds on the same clock)
local op, now = ARGV[1], tonumber(ARGV[2])

local function refill(level, stamp, per_minute)
  level, stamp = tonumber(level), tonumber(stamp)
  if level == nil or stamp == nil then return per_minute end
  if now > stamp then level = level + (now - stamp) * per_minute / 60.0 end
  if level > per_minute then level = per_minute end
  return level
end

if op == 'pause' then
  local until_ = tonumber(ARGV[3])
  local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0') or 0
  if until_ > current then redis.call('HSET', KEYS[1], 'paused_until', ARGV[3]) end
  return 1
end

if op == 'release' then
  local removed = redis.call('ZREM', KEYS[2], ARGV[3])
  local back, tpm, maxc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  if back > 0 and tpm > 0 then
    local h = redis.call('HMGET', KEYS[1], 't_level', 't_stamp')
    local level = refill(h[1], h[2], tpm) + back
    if level > tpm then level = tpm end
    redis.call('HSET', KEYS[1], 't_level', level, 't_stamp', now)
  end
  if removed == 1 and maxc > 0 and redis.call('LLEN', KEYS[3]) < maxc then
    redis.call('LPUSH', KEYS[3], 1)  -- wakes one worker waiting for a call slot
  end
  return removed
end

-- acquire
local id, cost = ARGV[3], tonumber(ARGV[4])
local rpm, tpm, maxc, lease = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8])
local h = redis.call('HMGET', KEYS[1], 'paused_until', 'r_level', 'r_stamp', 't_level',
  't_stamp')
local paused = tonumber(h[1] or '0') or 0
if paused > now then return {1, tostring(paused - now)} end
local wait, r_level, t_level = 0, 0, 0
if rpm > 0 then
  r_level = refill(h[2], h[3], rpm)
  local missing = math.min(1, rpm) - r_level
  if missing > 1e-9 then wait = math.max(wait, missing * 60.0 / rpm) end
end
if tpm > 0 then
  cost = math.min(cost, tpm)  -- a charge above the capacity waits for a full bucket
  t_level = refill(h[4], h[5], tpm)
  local missing = cost - t_level
  if missing > 1e-9 then wait = math.max(wait, missing * 60.0 / tpm) end
end
if wait > 0 then return {1, tostring(wait)} end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- leases of calls whose worker died
  if redis.call('ZCARD', KEYS[2]) >= maxc then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, tostring(tonumber(first[2]) - now)}
  end
  redis.call('ZADD', KEYS[2], now + lease, id)
end
if rpm > 0 then redis.call('HSET', KEYS[1], 'r_level', r_level - 1, 'r_stamp', now) end
if tpm > 0 then redis.call('HSET', KEYS[1], 't_level', t_level - cost, 't_stamp', now) end
return {0, ''}
