-- kv.set: writes a value, bumps its version, clears any expiry, indexes it.
-- KEYS[1] the value (hash: v, ver), KEYS[2] the component's key index.
-- ARGV[1] the value, ARGV[2] the key as the component named it.
-- Returns the new version.
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[1])
-- A key written before is indexed already, unless it had an expiry (keys
-- that expire are not listed): only a new key, or one losing its expiry.
if ver == 1 or redis.call('PERSIST', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
return ver
