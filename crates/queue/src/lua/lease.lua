-- lease: register a consumer, or renew its lease; it expires lease-ms from now
-- (server clock). A renewal does nothing for an id that is not registered (a
-- reaper released it): such a consumer must take a new id.
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- ARGV[1]  consumer id
-- ARGV[2]  lease length, ms
-- ARGV[3]  'new' to register, 'renew' to renew only
-- returns  the new expiry, ms since the epoch, or 0 if a renewal found no lease
if ARGV[3] == 'renew' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
return expiry
