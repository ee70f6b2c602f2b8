-- settle: finish any number of jobs in hand in one call. For each job the exact
-- element is removed from the processing list (LREM from the tail, where the
-- oldest jobs in hand sit); only if it was still there (not reaped meanwhile)
-- is the rewritten job scheduled for a retry or moved to dead.
-- KEYS[1]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[2]  <prefix>:{<queue>}:delayed
-- KEYS[3]  <prefix>:{<queue>}:dead
-- ARGV     groups of four per job:
--            op      'a' ack | 'r' retry | 'd' dead
--            raw     the exact element in the processing list
--            job     the rewritten job ('' for an ack)
--            delay   retry delay in ms ('0' unless op is 'r')
-- returns  one integer per job: 1 = settled, 0 = no longer in hand (nothing done)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 4 do
  local removed = redis.call('LREM', KEYS[1], -1, ARGV[i + 1])
  out[#out + 1] = removed
  if removed > 0 then
    local op = ARGV[i]
    if op == 'r' then
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i + 3]), ARGV[i + 2])
    elseif op == 'd' then
      redis.call('LPUSH', KEYS[3], ARGV[i + 2])
    end
  end
end
return out
