-- The outbox publisher takes a batch: up to ARGV[1] entries of the outbox
-- KEYS[1] that are due now, each leased (moved ARGV[2] ms ahead) so another
-- host does not take it while this one publishes. Redis's clock decides.
-- Returns the entries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), m) end
return due
