-- Prepended by queue.py to each script that sends events (emit, finish, cancel, release).
-- append_event adds one envelope, built by events.envelope in Python and passed as it is, to
-- its task's stream; the entry ids are 0-1, 0-2, ... (the follow cursor), capped about
-- `cap` entries. is_lease checks a lease token without failing on a record of the wrong type.
local function append_event(stream_key, cap, json)
  return redis.call('XADD', stream_key, 'MAXLEN', '~', cap, '0-*', 'e', json)
end
local function is_lease(key, token)
  local lease = redis.pcall('HGET', key, 'lease')
  return type(lease) == 'string' and lease ~= '' and lease == token
end
