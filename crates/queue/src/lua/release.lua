-- release: return a consumer's jobs in hand to the consumers' end of pending
-- (oldest in hand goes first) and remove it from the consumers zset.
-- The reaper calls it with force = 0: the lease is re-checked here, atomically,
-- so a consumer that renewed meanwhile keeps its jobs and two reapers never
-- both act. A consumer stopping gracefully calls it with force = 1.
-- A reaped job's delivery was lost with its worker, and that counts as a
-- delivery: the reaper raises the job's `lost` count, which leads the job as
-- its first field ({"lost":N,...}). Only that prefix is rewritten, so the rest
-- of the job (the payload above all) stays byte for byte. A job whose
-- deliveries (attempt + lost) reach max attempts goes to dead instead, with
-- the error "lost with its worker N times". Text that is not a job object goes
-- back unchanged (a consumer sends it to dead when it reads it).
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- KEYS[2]  <prefix>:{<queue>}:pending
-- KEYS[3]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[4]  <prefix>:{<queue>}:dead
-- KEYS[5]  ordered mode only: <prefix>:{<queue>}:holders
-- KEYS[6]  ordered mode only: <prefix>:{<queue>}:waiting:
-- ARGV[1]  consumer id
-- ARGV[2]  force: '1' release whatever the lease, '0' only if it has lapsed
-- ARGV[3]  max attempts: deliveries before a job goes to dead (force 0 only)
-- returns  {returned to pending, moved to dead}, or {-1} if the lease is live
--          (nothing done)
--
-- Ordered mode: a job returned to pending keeps the hold of its sender (taken
-- again, it passes as the holder, so the sender's later jobs still wait for
-- it); a job sent to dead hands the hold on as an acknowledgement does (see
-- exchange.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] ~= '1' then
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) >= now then
    return {-1}
  end
end
local n = 0
local dead = 0
if ARGV[2] == '1' then
  while redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT') do
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {n, dead}
end
local max = tonumber(ARGV[3])
while true do
  local raw = redis.call('LPOP', KEYS[3])
  if not raw then
    break
  end
  local ok, job = pcall(cjson.decode, raw)
  local body = ok and type(job) == 'table' and string.match(raw, '^%s*{(.*)}%s*$')
  local out = raw
  if body then
    local lost = (tonumber(job.lost) or 0) + 1
    local rest = string.match(body, '^%s*"lost":%d+,(.*)$')
    if rest then
      body = '"lost":' .. lost .. ',' .. rest
    elseif job.lost == nil then
      local sep = string.match(body, '^%s*$') and '' or ','
      body = '"lost":' .. lost .. sep .. body
    end
    -- (a `lost` some other writer moved from the front is counted, not rewritten)
    if max and (tonumber(job.attempt) or 0) + lost >= max then
      local times = lost == 1 and ' time' or ' times'
      redis.call('LPUSH', KEYS[4], '{' .. body .. ',"error":"lost with its worker '
        .. lost .. times .. '","died_at":' .. now .. '}')
      dead = dead + 1
      local sender = type(job.from) == 'string' and job.from or job.from_user_id
      if KEYS[6] and type(sender) == 'string' and type(job.id) == 'string'
          and redis.call('HGET', KEYS[5], sender) == job.id then
        local next = redis.call('LPOP', KEYS[6] .. sender)
        if next then
          redis.call('HSET', KEYS[5], sender, cjson.decode(next).id)
          redis.call('RPUSH', KEYS[2], next)
        else
          redis.call('HDEL', KEYS[5], sender)
        end
      end
      out = nil
    else
      out = '{' .. body .. '}'
    end
  end
  if out then
    redis.call('RPUSH', KEYS[2], out)
    n = n + 1
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {n, dead}
