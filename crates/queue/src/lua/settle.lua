-- settle: finish any number of jobs in hand in one call. For each job the exact
-- element is removed from the processing list (LREM from the tail, where the
-- oldest jobs in hand sit); only if it was still there (not reaped meanwhile)
-- is the rewritten job scheduled for a retry or moved to dead.
-- KEYS[1]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[2]  <prefix>:{<queue>}:delayed
-- KEYS[3]  <prefix>:{<queue>}:dead
-- ARGV[1]  one letter per job: 'a' ack, 'r' retry, 'd' dead
-- then per job, in that order:
--   a:  raw                  the exact element in the processing list
--   r:  raw, job, delay_ms   the rewritten job and its retry delay
--   d:  raw, job             the dead entry
-- returns  one integer per job: 1 = settled, 0 = no longer in hand (nothing done)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ops = ARGV[1]
local out = {}
local at = 2
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  local removed = redis.call('LREM', KEYS[1], -1, ARGV[at])
  out[i] = removed
  if op == 'a' then
    at = at + 1
  elseif op == 'r' then
    if removed > 0 then
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[at + 2]), ARGV[at + 1])
    end
    at = at + 3
  else
    if removed > 0 then
      redis.call('LPUSH', KEYS[3], ARGV[at + 1])
    end
    at = at + 2
  end
end
return out
