-- atomics.increment: adds a delta within bounds, at most once per marker.
-- KEYS[1] the counter, KEYS[2] the index, KEYS[3] the `once` marker (or the
-- counter again when there is none).
-- ARGV[1] the delta, ARGV[2] min and ARGV[3] max ('' for unbounded),
-- ARGV[4] the counter's key and ARGV[5] the marker's key as named,
-- ARGV[6] '1' when there is a marker.
-- Returns {0, new} applied, {1, current} out of range, {2, marker} already
-- applied. Values are decimal strings; Lua numbers are doubles, exact
-- within +-2^53.
if ARGV[6] == '1' then
  local m = redis.call('HGET', KEYS[3], 'v')
  if m then return {2, m} end
end
local stored = redis.call('HMGET', KEYS[1], 'v', 'ver')
local raw = stored[1]
local cur = 0
if raw then
  cur = tonumber(raw)
  if cur == nil then return redis.error_reply('value is not an integer') end
end
local new = cur + tonumber(ARGV[1])
if (ARGV[2] ~= '' and new < tonumber(ARGV[2])) or (ARGV[3] ~= '' and new > tonumber(ARGV[3])) then
  return {1, string.format('%.0f', cur)}
end
local ver = (tonumber(stored[2]) or 0) + 1
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', new), 'ver', ver)
-- Indexed when new; a counter that had an expiry keeps it, and is not listed.
if ver == 1 then redis.call('ZADD', KEYS[2], 0, ARGV[4]) end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[3], 'v', ARGV[1], 'ver', 1)
  redis.call('ZADD', KEYS[2], 0, ARGV[5])
end
return {0, string.format('%.0f', new)}
