-- expired: consumers whose lease has lapsed (server clock), candidates for release.
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- ARGV[1]  how many ids at most
-- returns  consumer ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))
