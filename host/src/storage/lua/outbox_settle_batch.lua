-- After a batch: removes the first ARGV[2] entries that follow (published,
-- or malformed) from the outbox KEYS[1], and puts the rest back, due
-- ARGV[1] ms from now. ARGV[3..] the entries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local done = tonumber(ARGV[2])
for i = 3, #ARGV do
  if i < 3 + done then redis.call('ZREM', KEYS[1], ARGV[i])
  else redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
end
return 1
