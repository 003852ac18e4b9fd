-- kv.delete: deletes a value and its index entry.
-- KEYS[1] the value, KEYS[2] the index; ARGV[1] the key as named.
-- Returns the number of keys deleted (0 or 1).
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
