-- enqueue: push each new job and set its dedup marker; any number of jobs in one call.
-- KEYS[1]      <prefix>:{<queue>}:pending
-- KEYS[1+i]    <prefix>:{<queue>}:seen:<id of job i>       (i = 1..n)
-- ARGV[1]      dedup marker TTL, seconds
-- ARGV[1+i]    job i as JSON
-- ARGV[1+n+i]  optional: job i's own marker TTL, seconds (give all n or none)
-- returns      array of n integers: 1 = new (pushed), 0 = duplicate (not pushed)
--
-- A marker is set only once its job is pushed, so a failure part-way never
-- leaves a marker without its job (a redelivery would be taken for a
-- duplicate and the job lost); at worst a job is pushed without its marker
-- and a redelivery pushes it again. pending's type is checked first, so a
-- wrong key fails the call before anything is written.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a list')
end
local n = #KEYS - 1
local out = {}
local new = {}
local claimed = {}
for i = 1, n do
  local key = KEYS[1 + i]
  if claimed[key] or redis.call('EXISTS', key) == 1 then
    out[i] = 0
  else
    claimed[key] = true
    out[i] = 1
    new[#new + 1] = i
  end
end
-- LPUSH many values at once (same order as one LPUSH each), in chunks so
-- unpack() stays far below Lua's stack limit; then mark what was pushed.
for from = 1, #new, 200 do
  local to = math.min(from + 199, #new)
  local push = {}
  for k = from, to do
    push[#push + 1] = ARGV[1 + new[k]]
  end
  redis.call('LPUSH', KEYS[1], unpack(push))
  for k = from, to do
    local i = new[k]
    redis.call('SET', KEYS[1 + i], '1', 'EX', ARGV[1 + n + i] or ARGV[1])
  end
end
return out
