-- Write a rebuilt cart view unless the stored one is already at its version or newer: a
-- rebuild races with the projection and with other rebuilds, and the view never goes back.
--
-- KEYS[1]  {teamcart:<id>}:view      hash: version, view (JSON), ttl (ms)
-- KEYS[2]  {teamcart:<id>}:presence  sorted set: "<user_id>|<connection>" -> expiry (ms)
-- ARGV[1]  the rebuilt view's version
-- ARGV[2]  the cart view JSON
-- ARGV[3]  the view's sliding TTL in ms
--
-- Returns {outcome, stored version, live presence members}; outcome is "written" or "stale".
local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or 0)
local clock = redis.call('TIME')
local now = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
local online = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if version <= stored then
  return {'stale', stored, online}
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'view', ARGV[2], 'ttl', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'written', version, online}
