-- A floor for bench/enqueue-instructions.sh, not part of the contract: the enqueue script's
-- arguments (as enqueue.lua takes them: the dedup base, the runs, then two per job; its
-- KEYS[1+i], optional (all n or none), left out), pending's TYPE, and one LPUSH of every job;
-- no dedup at all. What a call costs before any marker is looked for.
-- ARGV[2]    '<jobs>:<ttl>:<slot>' per run (read by the bench as enqueue.lua's layout)
local kind = redis.call('TYPE', KEYS[1])['ok']
local n = (#ARGV - 2) / 2
local out, push = {}, {}
for i = 1, n do
  out[i] = '1'
  push[i] = ARGV[2 * i + 1]
end
for from = 1, #push, 200 do
  redis.call('LPUSH', KEYS[1], unpack(push, from, math.min(from + 199, #push)))
end
return table.concat(out)
