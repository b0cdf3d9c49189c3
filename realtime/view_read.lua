-- Read one cart's view with the members online now, and slide the view's TTL.
--
-- KEYS[1]  {teamcart:<id>}:view      hash: version, view (JSON), ttl (ms)
-- KEYS[2]  {teamcart:<id>}:presence  sorted set: "<user_id>|<connection>" -> expiry (ms)
--
-- Returns {version or nil, view JSON or nil, live presence members}.
local fields = redis.call('HMGET', KEYS[1], 'version', 'view', 'ttl')
local clock = redis.call('TIME')
local now = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
local online = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if fields[1] and fields[3] then
  redis.call('PEXPIRE', KEYS[1], fields[3])
end
return {fields[1], fields[2], online}
