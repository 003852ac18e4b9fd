-- atomics.compare-and-swap: writes only if the stored version is the expected one.
-- KEYS[1] the value, KEYS[2] the index.
-- ARGV[1] the value, ARGV[2] the expected version ('' for absent),
-- ARGV[3] the key as named.
-- Returns {1, new version}, or {0, stored version} (-1 when absent).
local cur = redis.call('HGET', KEYS[1], 'ver')
if not ((cur == false and ARGV[2] == '') or (cur ~= false and cur == ARGV[2])) then
  if cur == false then return {0, -1} end
  return {0, tonumber(cur)}
end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[1])
-- A key written before is indexed already, unless it had an expiry (keys
-- that expire are not listed): only a new key, or one losing its expiry.
if ver == 1 or redis.call('PERSIST', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
end
return {1, ver}
