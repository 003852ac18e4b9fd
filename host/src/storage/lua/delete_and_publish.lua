-- outbox.delete-and-publish: delete and, when something was deleted, an outbox
-- entry in the same step.
-- KEYS[1] the value, KEYS[2] the index, KEYS[3] the outbox, KEYS[4] its counter.
-- ARGV[1] the key as named, ARGV[2] the delay in ms, ARGV[3] the entry
-- without its number (see set_if_absent_and_publish.lua).
-- Returns 1 when deleted, 0 when the key was absent.
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), string.format('%020d', seq) .. ARGV[3])
return 1
