-- Re-publishes dead letter ARGV[1] of the dead-letter stream KEYS[2] to its
-- stream KEYS[1], with its origin, request id and group, and deletes it.
-- Returns {1, new id}; {0, ''} if it does not exist; {2, group} if its
-- group no longer reads the stream.
local e = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #e == 0 then return {0, ''} end
local f, payload, origin, request, group = e[1][2], '', '', '', ''
for i = 1, #f, 2 do
  if f[i] == 'payload' then payload = f[i + 1]
  elseif f[i] == 'origin' then origin = f[i + 1]
  elseif f[i] == 'request_id' then request = f[i + 1]
  elseif f[i] == 'group' then group = f[i + 1] end
end
if group ~= '' then
  local found = false
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      for i = 1, #g, 2 do if g[i] == 'name' and g[i + 1] == group then found = true end end
    end
  end
  if not found then return {2, group} end
end
local fields = {'payload', payload, 'origin', origin, 'replayed_from', ARGV[1]}
if request ~= '' then table.insert(fields, 'request_id') table.insert(fields, request) end
if group ~= '' then table.insert(fields, 'for_group') table.insert(fields, group) end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('XDEL', KEYS[2], ARGV[1])
return {1, id}
