-- Change who is connected to one cart: add or refresh some connections, remove others, and
-- drop the ones whose expiry passed (their process died without saying goodbye).
--
-- KEYS[1]  {teamcart:<id>}:presence  sorted set: "<user_id>|<connection>" -> expiry (ms)
-- ARGV[1]  TTL in ms: a connection not refreshed within it counts as gone
-- ARGV[2]  n, the number of connections to add or refresh, listed next (ARGV[3] .. ARGV[2+n])
-- ARGV[3+n] ..  connections to remove
--
-- Returns {members before, members after}. "before" still holds the expired entries (the
-- subscribers were last told they were online), so the caller can tell whether the set of
-- online users changed and must be pushed.
local ttl = tonumber(ARGV[1])
local adds = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local before = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local expiry = string.format('%d', now + ttl)
for i = 3, 2 + adds do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
for i = 3 + adds, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
local after = redis.call('ZRANGE', KEYS[1], 0, -1)
if #after > 0 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
return {before, after}
