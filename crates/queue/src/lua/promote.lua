-- promote: move retries that are due from delayed to the producers' end of
-- pending, earliest due first. A due retry queues behind work already waiting
-- (it has had its backoff), and retries keep the order in which they fell due.
-- KEYS[1]  <prefix>:{<queue>}:delayed
-- KEYS[2]  <prefix>:{<queue>}:pending
-- ARGV[1]  jobs to move at most (at most 1000)
-- returns  how many were moved
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
  redis.call('LPUSH', KEYS[2], unpack(due))
end
return #due
