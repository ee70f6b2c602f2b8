-- enqueue: push each new job and mark it as seen; any number of jobs in one call.
-- KEYS[1]    <prefix>:{<queue>}:pending
-- KEYS[1+i]  <prefix>:{<queue>}:seen:<id of job i> (i = 1..n): the marker of
--            the layout before buckets, still honoured until it expires
-- ARGV[1]    <prefix>:{<queue>}:dedup: , where the marker buckets live
-- ARGV[2..]  five per job: its JSON, marker TTL (seconds), slot, route, digest
--   slot     'm' .. floor(timestamp / 60) for a job with a timestamp; '' for
--            one without (filed under 'd' .. the day by Redis's clock)
--   route    16 hex digits; the first L name the job's bucket at level L
--   digest   8 bytes: the marker, a field of its bucket (a hash)
-- returns    array of n integers: 1 = new (pushed), 0 = duplicate (not pushed)
--
-- A bucket is <dedup:><slot>:<first L digits of the route>. A marker goes into
-- the first bucket on its path (levels 0, 1, 2, ...) with room; buckets only
-- fill up and expire whole, so a marker is found by walking the same path
-- while the buckets are full. Every bucket on a new marker's path lives at
-- least that marker's TTL.
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
-- entries per bucket: Redis's default hash-max-listpack-entries, so that a
-- bucket stays one compact listpack
local CAP = 128
local DAY = 86400
local base = ARGV[1]
local now = tonumber(redis.call('TIME')[1])
local size = {}
local planned = {}

local function entries(bucket)
  if not size[bucket] then
    size[bucket] = redis.call('HLEN', bucket)
  end
  return size[bucket]
end

-- The buckets of one slot down to the first with room, or nil if the digest
-- is in one of them (or was planned there by this call).
local function walk(slot, route, digest)
  local path = {}
  for level = 0, #route do
    local bucket = base .. slot .. ':' .. string.sub(route, 1, level)
    if planned[bucket .. digest] or redis.call('HEXISTS', bucket, digest) == 1 then
      return nil
    end
    path[#path + 1] = bucket
    if entries(bucket) < CAP then
      break
    end
  end
  return path
end

-- A job without a timestamp goes under today's slot; the earlier days its
-- TTL still covers are searched too.
local function place(slot, route, digest, ttl)
  if slot ~= '' then
    return walk(slot, route, digest)
  end
  for day = math.floor((now - ttl) / DAY), math.floor(now / DAY) - 1 do
    if not walk('d' .. day, route, digest) then
      return nil
    end
  end
  return walk('d' .. math.floor(now / DAY), route, digest)
end

local n = #KEYS - 1
local out = {}
local new = {}
for i = 1, n do
  local at = 2 + 5 * (i - 1)
  local ttl, digest = tonumber(ARGV[at + 1]), ARGV[at + 4]
  local path = nil
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    path = place(ARGV[at + 2], ARGV[at + 3], digest, ttl)
  end
  if path then
    local bucket = path[#path]
    planned[bucket .. digest] = true
    size[bucket] = entries(bucket) + 1
    out[i] = 1
    new[#new + 1] = {json = ARGV[at], ttl = ttl, digest = digest, path = path}
  else
    out[i] = 0
  end
end
-- LPUSH many values at once (same order as one LPUSH each), in chunks so
-- unpack() stays far below Lua's stack limit; then mark what was pushed, and
-- make each bucket on the markers' paths live at least their TTL. A bucket is
-- given a little more (1/64 of the TTL), so most calls need not renew it.
for from = 1, #new, 200 do
  local to = math.min(from + 199, #new)
  local push = {}
  for k = from, to do
    push[#push + 1] = new[k].json
  end
  redis.call('LPUSH', KEYS[1], unpack(push))
  local lives = {}
  for k = from, to do
    local job = new[k]
    redis.call('HSET', job.path[#job.path], job.digest, '1')
    for _, bucket in ipairs(job.path) do
      lives[bucket] = math.max(lives[bucket] or 0, job.ttl)
    end
  end
  for bucket, ttl in pairs(lives) do
    if redis.call('TTL', bucket) < ttl then
      redis.call('EXPIRE', bucket, ttl + math.ceil(ttl / 64))
    end
  end
end
return out
