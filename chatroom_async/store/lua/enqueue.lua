-- Add one task: its record, its place in the ready set, a wake-up for an idle worker.
-- KEYS: 1 task record, 2 ready, 3 wake, 4 stats, 5 depth
-- ARGV: 1 task id, 2 spec json, 3 priority, 4 max_retries, 5 score
-- Returns 1, or 0 when a task with this id already exists (nothing changes).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'priority', ARGV[3], 'max_retries', ARGV[4],
           'score', ARGV[5], 'status', 'pending', 'retry_count', 0, 'deliveries', 0)
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
redis.call('HINCRBY', KEYS[4], 'total_tasks', 1)
-- One token is enough: a worker that claims and leaves tasks behind passes the wake-up on.
-- Pushed first and trimmed only if one was there already: an idle worker has taken the
-- last one, so under light load this is a single call.
if redis.call('RPUSH', KEYS[3], 1) > 1 then redis.call('LTRIM', KEYS[3], 0, 0) end
return 1
