-- exchange: one round trip of a consumer that keeps track of the order of its
-- own processing list: settle what it finished, renew its lease, take new jobs.
-- Taken jobs go in on the left, so the oldest in hand sit on the right. The
-- consumer finishes them mostly in that order, so most are settled by dropping
-- a count of elements from the right end (no job text sent back, no search);
-- a job finished out of order can be removed by its index from the right.
-- Nothing is done unless the consumer is still registered (a reaper that gave
-- its jobs back removed it, and such an id is never registered again) and the
-- list is exactly as the consumer expects.
-- KEYS[1]  <prefix>:{<queue>}:pending
-- KEYS[2]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[3]  <prefix>:{<queue>}:consumers
-- KEYS[4]  <prefix>:{<queue>}:delayed
-- KEYS[5]  <prefix>:{<queue>}:dead
-- KEYS[6]  <prefix>:{<queue>}:taking:<consumer>, a list that exists only
--          while this script runs (a take put together)
-- KEYS[7]  ordered mode only: <prefix>:{<queue>}:holders, sender -> id of the
--          job that holds the sender
-- KEYS[8]  ordered mode only: <prefix>:{<queue>}:waiting: , the start of the
--          name of each sender's list of jobs waiting for its holder
-- ARGV[1]  consumer id
-- ARGV[2]  lease length, ms
-- ARGV[3]  the length the processing list must have
-- ARGV[4]  D: elements to drop from the right end (finished jobs)
-- ARGV[5]  N: jobs to take at most (0..MAX_PER_CALL; more counts as MAX_PER_CALL)
-- ARGV[6]  one letter per operation below; their arguments follow in order:
--   h  first, last    the elements at the right end (-1) and at -D, which the
--                     drop must find there (sent whenever D > 0)
--   x  index, job     remove the element at index from the right (0 is the
--                     rightmost), which must equal job; indexes are counted
--                     before anything is removed, and lie beyond the D dropped
--   r  job, delay_ms  schedule job (a rewritten copy) in delayed
--   d  job            push job (a dead entry) to dead (ordered: and release
--                     the hold of its sender if it is the holder)
--   o  sender, id     ordered: release the sender's hold if job id holds it (a
--                     job acknowledged)
-- returns  {1, n}: n jobs were taken and are now the n leftmost elements of
--          the processing list, newest first (the consumer reads them with
--          LRANGE processing 0 N-1, sent right behind this call, which costs
--          Redis less than returning them from Lua); {0} if the consumer is not
--          registered, {-1} if the list is not as expected (in both cases
--          nothing was done)
--
-- Ordered mode (8 keys): a job is taken only if its sender (`from`, else
-- `from_user_id`) is free or held by the job itself; otherwise it is moved to
-- the end of the sender's waiting list. Taking a job of a free sender makes the
-- job its holder. When the holder leaves for good (acknowledged or dead; not a
-- retry), the sender's oldest waiting job becomes the holder and goes to the
-- consumers' end of pending, or the sender is freed. Jobs without a sender (or
-- an id) are taken as they come.

-- The per-call cap: the most jobs one call takes, and (ordered mode) the most
-- it sets aside, so that one call stays short. wa-queue reads its own cap (the
-- largest batch, the most removals by index it sends) from this line.
local MAX_PER_CALL = 1000

if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return {0}
end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then
  return {-1}
end
local ops = ARGV[6]
local at = 7
local removed = {}
local later = {}
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  if op == 'h' then
    if redis.call('LINDEX', KEYS[2], -1) ~= ARGV[at]
        or redis.call('LINDEX', KEYS[2], -tonumber(ARGV[4])) ~= ARGV[at + 1] then
      return {-1}
    end
    at = at + 2
  elseif op == 'x' then
    local index = -tonumber(ARGV[at]) - 1
    if redis.call('LINDEX', KEYS[2], index) ~= ARGV[at + 1] then
      return {-1}
    end
    removed[#removed + 1] = index
    at = at + 2
  elseif op == 'r' then
    later[#later + 1] = {'ZADD', at}
    at = at + 2
  elseif op == 'o' then
    later[#later + 1] = {'RELEASE', at}
    at = at + 2
  else
    later[#later + 1] = {'LPUSH', at}
    at = at + 1
  end
end
local ordered = KEYS[8] ~= nil
-- the sender and id of a job's text, or nil if it has no sender or no id
local function order_key(raw)
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' or type(job.id) ~= 'string' then
    return nil
  end
  local sender = job.from
  if type(sender) ~= 'string' then
    sender = job.from_user_id
  end
  if type(sender) ~= 'string' then
    return nil
  end
  return sender, job.id
end
-- the holder `id` of `sender` is done with: hand the hold to the sender's
-- oldest waiting job, which goes where the next take finds it first
local function release(sender, id)
  if not sender or redis.call('HGET', KEYS[7], sender) ~= id then
    return
  end
  local next = redis.call('LPOP', KEYS[8] .. sender)
  if next then
    local _, next_id = order_key(next)
    redis.call('HSET', KEYS[7], sender, next_id)
    redis.call('RPUSH', KEYS[1], next)
  else
    redis.call('HDEL', KEYS[7], sender)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
if #removed > 0 then
  -- mark, then remove all marks in one pass from the right
  local mark = '\0removed:' .. ARGV[1]
  for _, index in ipairs(removed) do
    redis.call('LSET', KEYS[2], index, mark)
  end
  redis.call('LREM', KEYS[2], -#removed, mark)
end
local drop = tonumber(ARGV[4])
if drop > 0 then
  redis.call('LTRIM', KEYS[2], 0, -drop - 1)
end
for _, op in ipairs(later) do
  if op[1] == 'ZADD' then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[op[2] + 1]), ARGV[op[2]])
  elseif op[1] == 'RELEASE' then
    release(ARGV[op[2]], ARGV[op[2] + 1])
  else
    redis.call('LPUSH', KEYS[5], ARGV[op[2]])
    if ordered then
      release(order_key(ARGV[op[2]]))
    end
  end
end
local n = math.min(tonumber(ARGV[5]), MAX_PER_CALL)
if n == 0 then
  return {1, 0}
end
local waiting = redis.call('LLEN', KEYS[1])
if waiting == 0 then
  return {1, 0}
end
n = math.min(n, waiting)
if ordered then
  -- one job at a time from the oldest end, as long as fewer than n are taken;
  -- at most MAX_PER_CALL set aside per call, so that one call stays short
  local took, parked = 0, 0
  while took < n and parked < MAX_PER_CALL do
    local raw = redis.call('RPOP', KEYS[1])
    if not raw then
      break
    end
    local sender, id = order_key(raw)
    local holder = sender and redis.call('HGET', KEYS[7], sender)
    if holder and holder ~= id then
      redis.call('RPUSH', KEYS[8] .. sender, raw)
      parked = parked + 1
    else
      if holder == false then
        redis.call('HSET', KEYS[7], sender, id)
      end
      redis.call('LPUSH', KEYS[2], raw)
      took = took + 1
    end
  end
  return {1, took}
end
local kept = redis.call('LLEN', KEYS[2])
-- With fewer jobs still in hand than to take (the usual case with quick
-- handlers), SORT ... STORE copies pending's n oldest (its right end, in order,
-- so the oldest ends up rightmost) into a fresh list without their text passing
-- through Lua, which hashes every byte of every string it is handed. Per job
-- taken this costs Redis about half of the plain way below.
if kept == 0 then
  redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', waiting - n, n, 'STORE', KEYS[2])
elseif kept < n then
  -- put together in the scratch list: the ones in hand move behind the new
  -- ones, one by one, and the result takes the list's place
  redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', waiting - n, n, 'STORE', KEYS[6])
  for _ = 1, kept do
    redis.call('LMOVE', KEYS[2], KEYS[6], 'LEFT', 'RIGHT')
  end
  redis.call('RENAME', KEYS[6], KEYS[2])
else
  -- taken is newest..oldest: push the oldest first, so it ends up rightmost,
  -- as LMOVE RIGHT LEFT would put it
  local taken = redis.call('LRANGE', KEYS[1], -n, -1)
  local oldest_first = {}
  for i = #taken, 1, -1 do
    oldest_first[#oldest_first + 1] = taken[i]
  end
  redis.call('LPUSH', KEYS[2], unpack(oldest_first))
end
redis.call('LTRIM', KEYS[1], 0, -n - 1)
return {1, n}
