-- The delayed-event mover: appends up to ARGV[1] due entries of the delayed
-- set KEYS[1] to the stream KEYS[2] and removes them.
-- Members are `<unique id>\n<origin>\n<payload>`; the id keeps equal
-- payloads distinct. A member whose id starts with `r:` carries a trail
-- line too: `r:<unique id>\n<origin>\n<trail>\n<payload>`, the trail being
-- the request id, then a space and the publisher's `traceparent` when it
-- has one (`Trail::line`). An id
-- ending `@<n>` was published with a key: `n` becomes the entry's `split`
-- (a canary's share of events is taken by it).
-- Returns how many entries were due.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  local a = string.find(m, '\n', 1, true)
  local b = a and string.find(m, '\n', a + 1, true)
  local c = b and string.sub(m, 1, 2) == 'r:' and string.find(m, '\n', b + 1, true)
  local fields
  if c then
    fields = {'payload', string.sub(m, c + 1), 'origin', string.sub(m, a + 1, b - 1)}
    local trail = string.sub(m, b + 1, c - 1)
    local space = string.find(trail, ' ', 1, true)
    local request, parent = trail, ''
    if space then request, parent = string.sub(trail, 1, space - 1), string.sub(trail, space + 1) end
    if request ~= '' then
      table.insert(fields, 'request_id')
      table.insert(fields, request)
    end
    if parent ~= '' then
      table.insert(fields, 'traceparent')
      table.insert(fields, parent)
    end
  elseif b and string.sub(m, 1, 2) ~= 'r:' then
    fields = {'payload', string.sub(m, b + 1), 'origin', string.sub(m, a + 1, b - 1)}
  end
  if fields then
    local split = string.match(string.sub(m, 1, a - 1), '@(%d+)$')
    if split then
      table.insert(fields, 'split')
      table.insert(fields, split)
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  -- Moved, or malformed (not written by a host): either way it must not
  -- block the entries behind it.
  redis.call('ZREM', KEYS[1], m)
end
return #due
