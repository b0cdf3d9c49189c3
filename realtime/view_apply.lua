-- Compare-and-set of one cart's view: the view of event `version` applies only onto the view
-- of `version - 1` (or onto nothing when it is the cart's first event, version 1).
--
-- KEYS[1]  {teamcart:<id>}:view      hash: version, view (JSON), ttl (ms)
-- KEYS[2]  {teamcart:<id>}:presence  sorted set: "<user_id>|<connection>" -> expiry (ms)
-- ARGV[1]  the event's version
-- ARGV[2]  the cart view JSON at that version
-- ARGV[3]  the view's sliding TTL in ms (short once the cart is converted, cancelled, expired)
--
-- Returns {outcome, stored version, live presence members}. outcome is
--   "applied"    written, TTL refreshed;
--   "duplicate"  the stored view is at this version or newer: nothing written;
--   "gap"        the stored view is older than version - 1, or missing: nothing written, the
--                caller rebuilds the view from PostgreSQL.
local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or 0)
local clock = redis.call('TIME')
local now = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
local online = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if version <= stored then
  return {'duplicate', stored, online}
end
if version ~= stored + 1 then
  return {'gap', stored, online}
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'view', ARGV[2], 'ttl', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'applied', version, online}
