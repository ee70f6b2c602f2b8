-- fetch: renew this consumer's lease, then move up to N jobs from the right
-- (oldest) end of pending to the left of its processing list. The same as N
-- times LMOVE pending processing RIGHT LEFT, done as one range move.
-- KEYS[1]  <prefix>:{<queue>}:pending
-- KEYS[2]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[3]  <prefix>:{<queue>}:consumers
-- ARGV[1]  N, jobs to move at most (1..1000)
-- ARGV[2]  consumer id
-- ARGV[3]  lease length, ms
-- returns  the moved jobs, oldest first (may be empty)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
local n = math.min(tonumber(ARGV[1]), 1000)
local taken = redis.call('LRANGE', KEYS[1], -n, -1)
if #taken == 0 then
  return taken
end
redis.call('LTRIM', KEYS[1], 0, -#taken - 1)
-- taken is newest..oldest; oldest first is the order of delivery and of the
-- pushes (so the oldest ends up rightmost in processing, as LMOVE would put it)
local out = {}
for i = #taken, 1, -1 do
  out[#out + 1] = taken[i]
end
redis.call('LPUSH', KEYS[2], unpack(out))
return out
