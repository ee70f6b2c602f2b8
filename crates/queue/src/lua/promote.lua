-- promote: move retries that are due from delayed to the consumers' end of
-- pending, earliest due first, so a retry that waited out its backoff goes
-- before newer work.
-- KEYS[1]  <prefix>:{<queue>}:delayed
-- KEYS[2]  <prefix>:{<queue>}:pending
-- ARGV[1]  jobs to move at most
-- returns  how many were moved
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i = #due, 1, -1 do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('RPUSH', KEYS[2], due[i])
end
return #due
