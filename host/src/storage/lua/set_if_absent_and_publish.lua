-- outbox.set-if-absent-and-publish: set-if-absent and, when written, an outbox
-- entry in the same step.
-- KEYS[1] the value, KEYS[2] the index, KEYS[3] the outbox, KEYS[4] its counter.
-- ARGV[1] the value, ARGV[2] the key as named, ARGV[3] the TTL in ms (0: none),
-- ARGV[4] the delay in ms, ARGV[5] the entry without its number.
-- The entry's number, zero-padded, comes first: entries due in the same
-- millisecond sort by it, so the publisher sends them in write order.
-- Due times are on Redis's clock, never a host's.
-- On a single Redis server an event due now skips the outbox: KEYS[5] is
-- then the stream (partition) it goes to and ARGV[6..] the stream entry's
-- fields, and the write and the append are one step. An entry waiting in
-- the outbox, or an append Redis refuses (KEYS[5] holds something other
-- than a stream), leaves the event to the outbox, which tries again until
-- it can.
-- Returns 1 when written, 0 when the key exists, 2 when written with its
-- event left to the outbox although KEYS[5] was given.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
-- Straight to the stream only while this outbox is empty: an entry waiting
-- there (delayed, left by a host that died, or being published) may be of
-- the same key, and the event then queues behind it, so one key's events
-- keep their order. pcall: a refused append (the key holds no stream) has
-- written nothing, and the event goes to the outbox instead of failing the
-- script halfway.
if KEYS[5] and redis.call('ZCARD', KEYS[3]) == 0
  and type(redis.pcall('XADD', KEYS[5], '*', unpack(ARGV, 6))) == 'string' then
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), string.format('%020d', seq) .. ARGV[5])
if KEYS[5] then return 2 end
return 1
