-- kv.set-if-absent: writes only if the key is absent.
-- KEYS[1] the value, KEYS[2] the index.
-- ARGV[1] the value, ARGV[2] the key as named, ARGV[3] the TTL in ms (0: none;
-- a key with a TTL is not indexed, as it goes away by itself).
-- Returns 1 when written, 0 when the key exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
return 1
