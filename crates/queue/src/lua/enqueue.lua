-- enqueue: push each new job and mark it as seen; any number of jobs in one call.
-- KEYS[1]    <prefix>:{<queue>}:pending
-- KEYS[1+i]  <prefix>:{<queue>}:seen:<id of job i> (i = 1..n): the marker of
--            the layout before buckets, still honoured until it expires
-- ARGV[1]    <prefix>:{<queue>}:dedup: , where the marker buckets live
-- ARGV[2..]  five per job: its JSON, marker TTL (seconds), slot, route, digest
--   slot     'm' .. floor(timestamp / 60) for a job with a timestamp; '' for
--            one without (filed by Redis's clock in slots of a width its TTL
--            sets, see place)
--   route    16 hex digits; the first L name the job's bucket at level L
--   digest   8 bytes: the marker, a field of its bucket (a hash)
-- returns    array of n integers: 1 = new (pushed), 0 = duplicate (not pushed)
--
-- A bucket is <dedup:><slot>:<first L digits of the route>. A marker goes into
-- the first bucket on its path (levels 0, 1, 2, ...) with room; buckets only
-- fill up and expire whole, so a marker is found by walking the same path
-- while the buckets are full. Every bucket on a new marker's path lives as long
-- as that marker must.
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
-- Every bucket's name starts with the base, which must carry pending's hash
-- tag: in Redis Cluster the buckets then live in the queue's slot.
local function tag(key)
  return string.match(key, '{[^}]+}')
end
local base = ARGV[1]
if not tag(KEYS[1]) or tag(base) ~= tag(KEYS[1]) then
  return redis.error_reply('ERR dedup base ' .. base .. ' lacks the hash tag of ' .. KEYS[1])
end
-- entries per bucket: Redis's default hash-max-listpack-entries, so that a
-- bucket stays one compact listpack
local CAP = 128
-- slots a TTL spans for a job without a timestamp (see place)
local SPAN = 8
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local now_ms = now * 1000 + math.floor(tonumber(clock[2]) / 1000)
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

-- Where a new marker goes (nil for a duplicate), the time (whole seconds) its
-- buckets must live to, and the time they are given when that is later than
-- their expiry. A job with a timestamp: its minute's slot, for its TTL from
-- now, plus 1/64 of it so that most calls need not renew the bucket. A job
-- without one: slots of step = ceil(TTL / SPAN) seconds of Redis's clock,
-- named s<step>.<floor(now / step)>; the slots back to now - TTL are searched
-- too, and a slot's buckets live to its end + TTL. A repeat is then a
-- duplicate up to TTL seconds later, and new from TTL + step on, however much
-- else is marked meanwhile.
local function place(slot, route, digest, ttl)
  if slot ~= '' then
    local need = math.ceil(now_ms / 1000) + ttl
    return walk(slot, route, digest), need, need + math.ceil(ttl / 64)
  end
  local step = math.max(1, math.ceil(ttl / SPAN))
  local current = math.floor(now / step)
  for k = math.floor((now - ttl) / step), current - 1 do
    if not walk('s' .. step .. '.' .. k, route, digest) then
      return nil
    end
  end
  local need = (current + 1) * step + ttl
  return walk('s' .. step .. '.' .. current, route, digest), need, need
end

local n = #KEYS - 1
local out = {}
local new = {}
for i = 1, n do
  local at = 2 + 5 * (i - 1)
  local ttl, digest = tonumber(ARGV[at + 1]), ARGV[at + 4]
  local path, need, give = nil, 0, 0
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    path, need, give = place(ARGV[at + 2], ARGV[at + 3], digest, ttl)
  end
  if path then
    local bucket = path[#path]
    planned[bucket .. digest] = true
    size[bucket] = entries(bucket) + 1
    out[i] = 1
    new[#new + 1] = {json = ARGV[at], need = need, give = give, digest = digest, path = path}
  else
    out[i] = 0
  end
end
-- LPUSH many values at once (same order as one LPUSH each), in chunks so
-- unpack() stays far below Lua's stack limit; then mark what was pushed, and
-- make each bucket on the markers' paths live as long as they need. Expiries
-- are whole seconds, so half a second tells "earlier" apart from the few
-- milliseconds between TIME and the clock PTTL counts from.
for from = 1, #new, 200 do
  local to = math.min(from + 199, #new)
  local push = {}
  for k = from, to do
    push[#push + 1] = new[k].json
  end
  redis.call('LPUSH', KEYS[1], unpack(push))
  local need, give = {}, {}
  for k = from, to do
    local job = new[k]
    redis.call('HSET', job.path[#job.path], job.digest, '1')
    for _, bucket in ipairs(job.path) do
      need[bucket] = math.max(need[bucket] or 0, job.need)
      give[bucket] = math.max(give[bucket] or 0, job.give)
    end
  end
  for bucket, due in pairs(need) do
    local left = redis.call('PTTL', bucket)
    if left < 0 or now_ms + left + 500 < due * 1000 then
      redis.call('EXPIREAT', bucket, give[bucket])
    end
  end
end
return out
