-- outbox.compare-and-swap-and-publish: compare-and-swap and, when swapped, an
-- outbox entry in the same step.
-- KEYS[1] the value, KEYS[2] the index, KEYS[3] the outbox, KEYS[4] its counter.
-- ARGV[1] the value, ARGV[2] the expected version ('' for absent),
-- ARGV[3] the key as named, ARGV[4] the delay in ms, ARGV[5] the entry
-- without its number (see set_if_absent_and_publish.lua).
-- On a single Redis server an event due now skips the outbox: KEYS[5] is
-- then the stream (partition) it goes to and ARGV[6..] the stream entry's
-- fields, and the write and the append are one step. An entry waiting in
-- the outbox, or an append Redis refuses (KEYS[5] holds something other
-- than a stream), leaves the event to the outbox, which tries again until
-- it can.
-- Returns {1, new version}, or {0, stored version} (-1 when absent); {2, new
-- version} when swapped with its event left to the outbox although KEYS[5]
-- was given.
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
-- Straight to the stream only while this outbox is empty: an entry waiting
-- there (delayed, left by a host that died, or being published) may be of
-- the same key, and the event then queues behind it, so one key's events
-- keep their order. pcall: a refused append (the key holds no stream) has
-- written nothing, and the event goes to the outbox instead of failing the
-- script halfway.
if KEYS[5] and redis.call('ZCARD', KEYS[3]) == 0
  and type(redis.pcall('XADD', KEYS[5], '*', unpack(ARGV, 6))) == 'string' then
  return {1, ver}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), string.format('%020d', seq) .. ARGV[5])
if KEYS[5] then return {2, ver} end
return {1, ver}
