-- dead: replay or purge exact dead entries, each found by a hint of where it is.
-- KEYS[1]  <prefix>:{<queue>}:dead
-- KEYS[2]  <prefix>:{<queue>}:pending
-- ARGV     triples per entry: its index counted from the right end (-1 = oldest; a hint,
--          as LINDEX takes it), the exact dead element, the job to push to pending ('' = purge)
-- returns  how many entries were taken out (an element no longer in dead is skipped)
--
-- An entry is named by its bytes, never by its index alone: when the hint no longer points at
-- those bytes (the list changed meanwhile), the element is looked for by value. Found entries
-- are overwritten with a marker that no dead entry can be (every entry is a JSON object) and
-- the markers are removed in one pass at the end, so taking out k of n entries costs one walk
-- of the list rather than k.
local gone = 'wa:dead:taken'
local n, marked = 0, 0
for i = 1, #ARGV, 3 do
  local at, entry, job = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local found = false
  if at < 0 and redis.call('LINDEX', KEYS[1], at) == entry then
    redis.call('LSET', KEYS[1], at, gone)
    marked = marked + 1
    found = true
  else
    found = redis.call('LREM', KEYS[1], -1, entry) > 0
  end
  if found then
    if job ~= '' then
      redis.call('LPUSH', KEYS[2], job)
    end
    n = n + 1
  end
end
if marked > 0 then
  redis.call('LREM', KEYS[1], 0, gone)
end
return n
