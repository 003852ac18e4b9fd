-- outbox.delete-and-publish: delete and, when something was deleted, an outbox
-- entry in the same step.
-- KEYS[1] the value, KEYS[2] the index, KEYS[3] the outbox, KEYS[4] its counter.
-- ARGV[1] the key as named, ARGV[2] the delay in ms, ARGV[3] the entry
-- without its number (see set_if_absent_and_publish.lua).
-- On a single Redis server an event due now skips the outbox: KEYS[5] is
-- then the stream (partition) it goes to and ARGV[4..] the stream entry's
-- fields, and the write and the append are one step. An entry waiting in
-- the outbox, or an append Redis refuses (KEYS[5] holds something other
-- than a stream), leaves the event to the outbox, which tries again until
-- it can.
-- Returns 1 when deleted, 0 when the key was absent, 2 when deleted with its
-- event left to the outbox although KEYS[5] was given.
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 0 then return 0 end
-- Straight to the stream only while this outbox is empty: an entry waiting
-- there (delayed, left by a host that died, or being published) may be of
-- the same key, and the event then queues behind it, so one key's events
-- keep their order. pcall: a refused append (the key holds no stream) has
-- written nothing, and the event goes to the outbox instead of failing the
-- script halfway.
if KEYS[5] and redis.call('ZCARD', KEYS[3]) == 0
  and type(redis.pcall('XADD', KEYS[5], '*', unpack(ARGV, 4))) == 'string' then
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), string.format('%020d', seq) .. ARGV[3])
if KEYS[5] then return 2 end
return 1
