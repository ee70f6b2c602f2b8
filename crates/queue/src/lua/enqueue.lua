-- enqueue: push each new job and mark it as seen; any number of jobs in one call.
-- KEYS[1]    <prefix>:{<queue>}:pending
-- KEYS[1+i]  optional (all n or none): <prefix>:{<queue>}:seen:<id of job i>,
--            the marker of the layout before buckets (see legacy below)
-- ARGV[1]    <prefix>:{<queue>}:dedup: , where the marker buckets live
-- ARGV[2]    the jobs in runs, in order, that share a slot and a marker TTL:
--            '<jobs>:<ttl>:<slot>' per run, separated by spaces, e.g.
--            '20:691200:m28616666 1:3600:' (20 jobs, then one more)
--   ttl      the run's marker TTL, whole seconds
--   slot     'm' .. floor(timestamp / 60) for jobs with a timestamp; '' for
--            those without (filed by Redis's clock in slots of a width their
--            TTL sets, see unstamped)
-- ARGV[3..]  two per job: its JSON, its marker
--   marker   bytes 0..8 of SHA-256(id) as a signed big-endian 64-bit
--            integer, in decimal: a member of a bucket (a set of integers)
-- returns    a string of n characters: '1' = new (pushed), '0' = duplicate
--            (not pushed)
--
-- A slot is a linear hash table of buckets <dedup:><slot>/<b>, b = 0 .. N-1,
-- on the marker's route (see route): a marker lives in bucket route mod
-- 2^(L+1), or route mod 2^L when that is N or more (2^L <= N < 2^(L+1)).
-- When the slot holds more than FILL markers per bucket, bucket N - 2^L is
-- split: its markers whose route mod 2^(L+1) is N move to a new bucket N. So
-- a marker is always in the one bucket its route names, whatever the slot's
-- size. Every bucket also holds 0, so that none is ever empty. The slot's
-- header <dedup:><slot> is the string '<N> <markers> <expiry>'; the header
-- and every bucket of the slot expire together, at that expiry (whole
-- seconds, Redis's clock).
--
-- SADD both looks for a marker and sets it. A call sets its markers, then
-- pushes; if the push fails it takes its markers out again before failing,
-- so a failure never leaves a marker without its job (a redelivery would be
-- taken for a duplicate and the job lost). pending's type, the base's hash
-- tag, the runs, the headers and the markers are checked before anything is
-- written.
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
-- the queue's own keys start with what comes before 'dedup:'
local queue = string.match(base, '^(.*:)dedup:$')
if not queue then
  return redis.error_reply('ERR dedup base ' .. base .. ' does not end in :dedup:')
end
local n = (#ARGV - 2) / 2
if n % 1 ~= 0 or (#KEYS ~= 1 and #KEYS ~= 1 + n) then
  return redis.error_reply('ERR enqueue takes runs, two arguments per job and no seen: key or one per job')
end
-- markers per bucket before a split: the fullest buckets (those a round of
-- splits has not reached yet) then hold about 2 * FILL, below Redis's
-- default set-max-intset-entries (512), so buckets stay compact intsets
local FILL = 200
-- most buckets per slot: routes are 15 bits
local ROUTES = 32768
-- slots a TTL spans for a job without a timestamp (see unstamped)
local SPAN = 8
-- a bucket's number in decimal, digit by digit (see name)
local DIGIT = {[0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local now_ms = now * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- A marker's route: |marker| mod 10^6 (its last six digits), mod 2^15.
local function route(marker)
  if #marker < 7 then
    return math.abs(tonumber(marker)) % ROUTES
  end
  local a, b, c, d, e, f = string.byte(marker, -6, -1)
  return (((((a * 10 + b) * 10 + c) * 10 + d) * 10 + e) * 10 + f - 5333328) % ROUTES
end

-- Calls cmd key arg... with the arguments in chunks, so that unpack() stays
-- far below Lua's stack limit; answers the sum of the replies.
local function chunked(cmd, key, args)
  local sum = 0
  for from = 1, #args, 200 do
    local to = math.min(from + 199, #args)
    if key then
      sum = sum + redis.call(cmd, key, unpack(args, from, to))
    else
      sum = sum + redis.call(cmd, unpack(args, from, to))
    end
  end
  return sum
end

-- A slot's state, read once per call from its header: N (buckets), 2^L, the
-- markers it holds and when it expires (0 for a slot that does not exist).
local slots = {}
local function slot(name)
  local st = slots[name]
  if st then
    return st
  end
  local header = base .. name
  st = {name = name, header = header, prefix = header .. '/', n = 0, low = 1, count = 0, expiry = 0,
    made = {}, need = 0, give = 0, coming = 0}
  local head = redis.call('GET', header)
  st.fresh = not head
  if head then
    local b, count, expiry = string.match(head, '^(%d+) (%d+) (%d+)$')
    if not b or tonumber(b) < 1 then
      error({err = 'ERR malformed dedup header ' .. header})
    end
    st.n, st.count, st.expiry = tonumber(b), tonumber(count), tonumber(expiry)
    while st.low * 2 <= st.n do
      st.low = st.low * 2
    end
  end
  slots[name] = st
  return st
end

-- Bucket b's name in a slot: its prefix and b in decimal. Built from digits,
-- as Lua's own number formatting (printf of a double) costs several times
-- as much; b < 32768.
local function name(prefix, b)
  if b < 10 then
    return prefix .. DIGIT[b]
  end
  local e = b % 10
  b = (b - e) / 10
  if b < 10 then
    return prefix .. DIGIT[b] .. DIGIT[e]
  end
  local d = b % 10
  b = (b - d) / 10
  if b < 10 then
    return prefix .. DIGIT[b] .. DIGIT[d] .. DIGIT[e]
  end
  local c = b % 10
  b = (b - c) / 10
  if b < 10 then
    return prefix .. DIGIT[b] .. DIGIT[c] .. DIGIT[d] .. DIGIT[e]
  end
  local a = b % 10
  return prefix .. DIGIT[(b - a) / 10] .. DIGIT[a] .. DIGIT[c] .. DIGIT[d] .. DIGIT[e]
end

-- The name of the bucket of a slot that a route names.
local function bucket(st, route)
  local b = route % (2 * st.low)
  if b >= st.n then
    b = b - st.low
  end
  return name(st.prefix, b)
end

-- Splits bucket N - 2^L of a slot into itself and a new bucket N.
local function split(st)
  local low = st.low
  local from, into = st.n - low, st.n
  local mask = 2 * low
  local moved, m = {}, 0
  local source, target = name(st.prefix, from), name(st.prefix, into)
  for _, marker in ipairs(redis.call('SMEMBERS', source)) do
    -- route(marker), inlined: this runs for each of the bucket's markers
    local r
    if #marker < 7 then
      r = math.abs(tonumber(marker))
    else
      local a, b, c, d, e, f = string.byte(marker, -6, -1)
      r = (((((a * 10 + b) * 10 + c) * 10 + d) * 10 + e) * 10 + f - 5333328)
    end
    if r % ROUTES % mask == into then
      m = m + 1
      moved[m] = marker
    end
  end
  if m > 0 then
    redis.call('SADD', target, '0')
    chunked('SADD', target, moved)
    chunked('SREM', source, moved)
    st.made[#st.made + 1] = into
  end
  st.n = into + 1
  if st.n == mask then
    st.low = mask
  end
end

-- The buckets a new slot starts with: for a minute's slot, as many as the
-- minute before needed, ceil(its markers / FILL), so that a steady rate
-- needs no split; else 1. Buckets are made as markers land in them.
local function sized(name)
  local minute = string.match(name, '^m(%d+)$')
  if minute then
    local head = redis.call('GET', base .. 'm' .. (tonumber(minute) - 1))
    local count = head and tonumber(string.match(head, '^%d+ (%d+) '))
    if count and count > FILL then
      return math.min(ROUTES, math.ceil(count / FILL))
    end
  end
  return 1
end

-- The slot of jobs without a timestamp, and the older slots their markers
-- are looked for in too: slots of step = ceil(TTL / SPAN) seconds of Redis's
-- clock, named s<step>.<floor(now / step)>, and those back to now - TTL. (A
-- job with a timestamp: its minute's slot only.)
local function unstamped(ttl)
  local step = math.max(1, math.ceil(ttl / SPAN))
  local current = math.floor(now / step)
  local older = {}
  for k = math.floor((now - ttl) / step), current - 1 do
    older[#older + 1] = slot('s' .. step .. '.' .. k)
  end
  return slot('s' .. step .. '.' .. current), older
end

-- The time (whole seconds) a new marker's slot must live to, and the time
-- it is given when that is later than its expiry. A job with a timestamp:
-- its TTL from now, plus 1/64 of it so that most calls need not renew the
-- slot. A job without one: its slot's end + TTL. A repeat is then a
-- duplicate up to TTL seconds later, and new from TTL + step on, however
-- much else is marked meanwhile.
local function lifetime(stamped, ttl)
  if stamped then
    local need = math.ceil(now_ms / 1000) + ttl
    return need, need + math.ceil(ttl / 64)
  end
  local step = math.max(1, math.ceil(ttl / SPAN))
  local need = (math.floor(now / step) + 1) * step + ttl
  return need, need
end

-- The runs, each with its slot (and for jobs without a timestamp the older
-- slots to look in) and how long a marker it adds makes the slot live.
local runs, total = {}, 0
do
  local spec, at = ARGV[2], 1
  while at <= #spec do
    local _, e, jobs, ttl, stamp = string.find(spec, '^(%d+):(%d+):([^ ]*) ?', at)
    jobs, ttl = tonumber(jobs or 0), tonumber(ttl or 0)
    if not e or jobs < 1 or ttl < 1 or not (stamp == '' or string.find(stamp, '^m%d+$')) then
      return redis.error_reply('ERR malformed runs at ' .. at .. ' of ' .. spec)
    end
    at = e + 1
    local run = {jobs = jobs}
    if stamp ~= '' then
      run.slot = slot(stamp)
    else
      run.slot, run.older = unstamped(ttl)
    end
    run.need, run.give = lifetime(stamp ~= '', ttl)
    runs[#runs + 1] = run
    total = total + jobs
  end
end
if total ~= n then
  return redis.error_reply('ERR runs hold ' .. total .. ' jobs, not ' .. n)
end
for i = 1, n do
  local marker = ARGV[2 * i + 2]
  local len = #marker
  if len == 0 or len > 20 or (len < 7 and not tonumber(marker)) then
    return redis.error_reply('ERR marker of job ' .. i .. ' is not a 64-bit integer')
  end
end

-- Markers of the layout before buckets (v0.1.0: a key seen:<id> per job,
-- SET EX), looked for until <queue>seen-until, a time (whole seconds of
-- Redis's clock) after which none can be left: legacy.lua writes it once it
-- has looked through the keys. Without a record, or before its time, each
-- job's key is looked for (one EXISTS for all; one per job only if any
-- exists): the key a caller gave, or else one named from the job's id. A job
-- whose key exists is a duplicate (old[i]).
local old = false
local stop = tonumber(redis.call('GET', queue .. 'seen-until'))
if not stop or now < stop then
  local legacy = {}
  for i = 1, n do
    local key = KEYS[1 + i]
    if not key then
      local json = ARGV[2 * i + 1]
      local id = string.match(json, '^{"v":%d+,"id":"([^"\\]*)"')
      if not id then
        local ok, job = pcall(cjson.decode, json)
        id = ok and type(job) == 'table' and job.id
        if type(id) ~= 'string' then
          return redis.error_reply('ERR job ' .. i .. ' has no string id')
        end
      end
      key = queue .. 'seen:' .. id
    end
    legacy[i] = key
  end
  for from = 1, n, 200 do
    if redis.call('EXISTS', unpack(legacy, from, math.min(from + 199, n))) > 0 then
      old = {}
      break
    end
  end
  if old then
    local i = 0
    for _, run in ipairs(runs) do
      for _ = 1, run.jobs do
        i = i + 1
        old[i] = redis.call('EXISTS', legacy[i]) == 1
        if old[i] then
          run.slot.coming = run.slot.coming - 1
        end
      end
    end
  end
end

-- Read every header and split ahead of this call's markers, as if all of
-- them were new, so that no bucket overfills while they go in.
for _, run in ipairs(runs) do
  run.slot.coming = run.slot.coming + run.jobs
end
for _, st in pairs(slots) do
  if st.coming > 0 then
    if st.n == 0 then
      st.n = sized(st.name)
      while st.low * 2 <= st.n do
        st.low = st.low * 2
      end
    end
    while st.count + st.coming > FILL * st.n and st.n < ROUTES do
      split(st)
    end
  end
end

-- out[i]: '1' for a job that was new (its marker is set), '0' for one that
-- was not; nil for the jobs not reached yet.
local out, push, added = {}, {}, 0

-- Takes this call's markers out again (after a failed write).
local function undo()
  local i = 0
  for _, run in ipairs(runs) do
    local st = run.slot
    for _ = 1, run.jobs do
      i = i + 1
      if out[i] == '1' then
        local marker = ARGV[2 * i + 2]
        redis.call('SREM', bucket(st, route(marker)), marker)
        st.count = st.count - 1
      end
    end
  end
end

-- Writes the header and expiry of each slot that changed: a slot that must
-- live longer than its expiry gets the later time on every bucket, and new
-- buckets get it. A new slot that ended up with no marker (all duplicates,
-- or undone) is removed.
local function finish()
  for _, st in pairs(slots) do
    if st.added or #st.made > 0 then
      if st.fresh and st.count == 0 then
        for _, b in ipairs(st.made) do
          redis.call('DEL', name(st.prefix, b))
        end
      else
        local renew = st.need > st.expiry
        if renew then
          st.expiry = st.give
        end
        redis.call('SET', st.header, st.n .. ' ' .. st.count .. ' ' .. st.expiry, 'EXAT', st.expiry)
        -- (a new slot has only the buckets this call made)
        if renew and not st.fresh then
          for b = 0, st.n - 1 do
            redis.call('EXPIREAT', name(st.prefix, b), st.expiry)
          end
        else
          for _, b in ipairs(st.made) do
            redis.call('EXPIREAT', name(st.prefix, b), st.expiry)
          end
        end
      end
    end
  end
end

-- One pass over the jobs, run by run: look for each marker (in the older
-- slots too for a job without a timestamp) and set it in its bucket.
local i = 0
for _, run in ipairs(runs) do
  local st, older = run.slot, run.older
  local prefix, low, n2, buckets = st.prefix, st.low, 2 * st.low, st.n
  local fresh = 0
  for _ = 1, run.jobs do
    i = i + 1
    local marker = ARGV[2 * i + 2]
    local seen = old and old[i]
    -- route(marker) and the bucket it names, inlined: this runs for each job
    local r
    if #marker < 7 then
      r = math.abs(tonumber(marker)) % ROUTES
    else
      local a, b, c, d, e, f = string.byte(marker, -6, -1)
      r = (((((a * 10 + b) * 10 + c) * 10 + d) * 10 + e) * 10 + f - 5333328) % ROUTES
    end
    if older and not seen then
      for _, o in ipairs(older) do
        if o.n > 0 and redis.call('SISMEMBER', bucket(o, r), marker) == 1 then
          seen = true
          break
        end
      end
    end
    local set = 0
    if not seen then
      local b = r % n2
      if b >= buckets then
        b = b - low
      end
      set = redis.pcall('SADD', name(prefix, b), '0', marker)
      if set == 2 then
        -- the bucket's first marker: it was made now, with its 0
        st.made[#st.made + 1] = b
        set = 1
      elseif set ~= 1 and set ~= 0 then
        st.count = st.count + fresh
        undo()
        finish()
        return set
      end
    end
    if set == 1 then
      out[i] = '1'
      fresh = fresh + 1
      added = added + 1
      push[added] = ARGV[2 * i + 1]
    else
      out[i] = '0'
    end
  end
  if fresh > 0 then
    st.count = st.count + fresh
    st.added = true
    if run.need > st.need then
      st.need, st.give = run.need, run.give
    end
  end
end

-- LPUSH many values at once (same order as one LPUSH each).
for from = 1, added, 200 do
  local pushed = redis.pcall('LPUSH', KEYS[1], unpack(push, from, math.min(from + 199, added)))
  if type(pushed) == 'table' then
    undo()
    finish()
    return pushed
  end
end
finish()
return table.concat(out)
