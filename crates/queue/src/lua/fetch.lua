-- fetch: renew this consumer's lease, then move up to N jobs from the right
-- (oldest) end of pending to the left of its processing list.
-- KEYS[1]  <prefix>:{<queue>}:pending
-- KEYS[2]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[3]  <prefix>:{<queue>}:consumers
-- ARGV[1]  N, jobs to move at most
-- ARGV[2]  consumer id
-- ARGV[3]  lease length, ms
-- returns  the moved jobs, oldest first (may be empty)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  out[i] = job
end
return out
