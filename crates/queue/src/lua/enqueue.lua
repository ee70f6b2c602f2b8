-- enqueue: dedup marker + push, atomic per job, any number of jobs in one call.
-- KEYS[1]      <prefix>:{<queue>}:pending
-- KEYS[1+i]    <prefix>:{<queue>}:seen:<id of job i>       (i = 1..n)
-- ARGV[1]      dedup marker TTL, seconds
-- ARGV[1+i]    job i as JSON
-- returns      array of n integers: 1 = new (pushed), 0 = duplicate (not pushed)
local ttl = ARGV[1]
local out = {}
local push = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    out[i - 1] = 1
    push[#push + 1] = ARGV[i]
    -- LPUSH many values at once (same order as one LPUSH each); flush in
    -- chunks so unpack() stays far below Lua's stack limit.
    if #push == 200 then
      redis.call('LPUSH', KEYS[1], unpack(push))
      push = {}
    end
  else
    out[i - 1] = 0
  end
end
if #push > 0 then
  redis.call('LPUSH', KEYS[1], unpack(push))
end
return out
