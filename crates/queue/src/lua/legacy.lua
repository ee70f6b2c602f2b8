-- legacy: one step of the look through Redis's keys for the dedup markers
-- of the layout before buckets (v0.1.0: seen:<id>, SET EX), and at its end
-- the record of when none can be left, after which enqueue.lua stops looking
-- for them.
-- KEYS[1]  <prefix>:{<queue>}:seen-until
-- ARGV[1]  SCAN cursor: '0' for the first step, then the one the step before
--          answered
-- ARGV[2]  the latest time any seen: key found so far may still exist (whole
--          seconds, Redis's clock; '0' for the first step)
-- returns  {cursor, latest}: cursor '0' when the look is over, and then the
--          record holds max(latest, now); {'0', record} at once when the
--          record exists already, and {'0', '-1'} when a seen: key without
--          an expiry was found (no record: the look is done again next time)
--
-- SCAN returns every key that exists from the first step to the last, and
-- no version since the buckets writes seen: keys, so after a look that ran
-- to the end none exists past the record's time. Each step visits about
-- 1000 of the database's keys, so a look never holds Redis for long.
local record = redis.call('GET', KEYS[1])
if record then
  return {'0', record}
end
local queue = string.match(KEYS[1], '^(.*:)seen%-until$')
if not queue then
  return redis.error_reply('ERR ' .. KEYS[1] .. ' does not end in :seen-until')
end
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local now_ms = now * 1000 + math.floor(tonumber(clock[2]) / 1000)
local latest = tonumber(ARGV[2])
local pattern = string.gsub(queue, '[%*%?%[%]\\]', '\\%0') .. 'seen:*'
local step = redis.call('SCAN', ARGV[1], 'MATCH', pattern, 'COUNT', 1000)
for _, key in ipairs(step[2]) do
  local left = redis.call('PTTL', key)
  if left == -1 then
    return {'0', '-1'}
  end
  -- gone once Redis's clock passes now_ms + left: from the next whole second on
  local gone = math.floor((now_ms + left) / 1000) + 1
  if gone > latest then
    latest = gone
  end
end
if step[1] == '0' then
  redis.call('SET', KEYS[1], math.max(latest, now))
end
return {step[1], tostring(latest)}
