-- events.publish-after: adds ARGV[2] to the delayed set KEYS[1], due ARGV[1]
-- ms from now on Redis's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
