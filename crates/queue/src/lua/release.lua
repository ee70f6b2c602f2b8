-- release: return a consumer's jobs in hand to the consumers' end of pending
-- (oldest in hand goes first) and remove it from the consumers zset.
-- The reaper calls it with force = 0: the lease is re-checked here, atomically,
-- so a consumer that renewed meanwhile keeps its jobs and two reapers never
-- both act. A consumer stopping gracefully calls it with force = 1.
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- KEYS[2]  <prefix>:{<queue>}:pending
-- KEYS[3]  <prefix>:{<queue>}:processing:<consumer>
-- ARGV[1]  consumer id
-- ARGV[2]  force: '1' release whatever the lease, '0' only if it has lapsed
-- returns  jobs returned to pending, or -1 if the lease is live (nothing done)
if ARGV[2] ~= '1' then
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tonumber(expiry) >= now then
      return -1
    end
  end
end
local n = 0
while redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT') do
  n = n + 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
return n
