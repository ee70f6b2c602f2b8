-- replay: move dead jobs back to pending, atomic per job.
-- KEYS[1]  <prefix>:{<queue>}:dead
-- KEYS[2]  <prefix>:{<queue>}:pending
-- ARGV     pairs per job: the exact dead element, the rewritten job
-- returns  how many were moved (an element no longer in dead is skipped)
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    n = n + 1
  end
end
return n
