-- lease: (re)register a consumer; its lease expires lease-ms from now (server clock).
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- ARGV[1]  consumer id
-- ARGV[2]  lease length, ms
-- returns  the new expiry, ms since the epoch
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
return expiry
