-- outbox.set-if-absent-and-publish: set-if-absent and, when written, an outbox
-- entry in the same step.
-- KEYS[1] the value, KEYS[2] the index, KEYS[3] the outbox, KEYS[4] its counter.
-- ARGV[1] the value, ARGV[2] the key as named, ARGV[3] the TTL in ms (0: none),
-- ARGV[4] the delay in ms, ARGV[5] the entry without its number.
-- The entry's number, zero-padded, comes first: entries due in the same
-- millisecond sort by it, so the publisher sends them in write order.
-- Due times are on Redis's clock, never a host's.
-- Returns 1 when written, 0 when the key exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), string.format('%020d', seq) .. ARGV[5])
return 1
