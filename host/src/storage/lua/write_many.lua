-- batch.write-many: several writes in one atomic step, in order, each as
-- its own script does it (set.lua, set_if_absent.lua, increment.lua,
-- delete.lua, which say why).
-- KEYS[1] the index; then per write its value key, and for an increment
-- its marker key (the counter again when there is none).
-- ARGV per write: its kind, then its arguments:
--   set            's', value, key as named
--   set-if-absent  'a', value, key as named, TTL in ms (0: none)
--   increment      'i', delta, min, max ('' unbounded), key as named,
--                  marker as named, '1' when there is a marker
--   delete         'd', key as named
-- Returns per write a pair {tag, value}: set {0, version as a string}; set-if-absent
-- {1 written or 0, ''}; increment {0 applied, 1 out of range, 2 already
-- applied, with the value as a decimal string or the marker}; delete
-- {1 existed or 0, ''}.
-- A script's writes are not undone by an error, so every counter is
-- checked before anything is written (the host refuses a batch that both
-- sets and increments one key, so no write here can spoil a counter).
local index = KEYS[1]
-- Each counter is read once, by the check below, and kept current through
-- the writes: {value or false, version or false}. Any other write to a key
-- forgets it, so a later read sees Redis.
local seen = {}
local function counter(key)
  local c = seen[key]
  if not c then
    local r = redis.call('HMGET', key, 'v', 'ver')
    c = {r[1], r[2]}
    seen[key] = c
  end
  return c
end
local k, a = 2, 1
local width = {s = {1, 3}, a = {1, 4}, i = {2, 7}, d = {1, 2}}
while a <= #ARGV do
  local w = width[ARGV[a]]
  if not w then return redis.error_reply('unknown write ' .. tostring(ARGV[a])) end
  if ARGV[a] == 'i' then
    local raw = counter(KEYS[k])[1]
    if raw and tonumber(raw) == nil then return redis.error_reply('value is not an integer') end
  end
  k, a = k + w[1], a + w[2]
end
k, a = 2, 1
local out = {}
while a <= #ARGV do
  local kind = ARGV[a]
  if kind == 's' then
    local key = KEYS[k]
    seen[key] = nil
    local ver = redis.call('HINCRBY', key, 'ver', 1)
    redis.call('HSET', key, 'v', ARGV[a + 1])
    -- Indexed already unless new or losing an expiry (as set.lua).
    if ver == 1 or redis.call('PERSIST', key) == 1 then
      redis.call('ZADD', index, 0, ARGV[a + 2])
    end
    out[#out + 1] = {0, tostring(ver)}
    k, a = k + 1, a + 3
  elseif kind == 'a' then
    local key = KEYS[k]
    seen[key] = nil
    if redis.call('EXISTS', key) == 1 then
      out[#out + 1] = {0, ''}
    else
      redis.call('HSET', key, 'v', ARGV[a + 1], 'ver', 1)
      if tonumber(ARGV[a + 3]) > 0 then
        redis.call('PEXPIRE', key, ARGV[a + 3])
      else
        redis.call('ZADD', index, 0, ARGV[a + 2])
      end
      out[#out + 1] = {1, ''}
    end
    k, a = k + 1, a + 4
  elseif kind == 'i' then
    local key, marker = KEYS[k], KEYS[k + 1]
    local has_marker = ARGV[a + 6] == '1'
    local done = nil
    if has_marker then
      local m = redis.call('HGET', marker, 'v')
      if m then done = {2, m} end
    end
    if not done then
      local stored = counter(key)
      local cur = 0
      if stored[1] then cur = tonumber(stored[1]) end
      local new = cur + tonumber(ARGV[a + 1])
      local min, max = ARGV[a + 2], ARGV[a + 3]
      if (min ~= '' and new < tonumber(min)) or (max ~= '' and new > tonumber(max)) then
        done = {1, string.format('%.0f', cur)}
      else
        local value, ver = string.format('%.0f', new), (tonumber(stored[2]) or 0) + 1
        redis.call('HSET', key, 'v', value, 'ver', ver)
        seen[key] = {value, ver}
        -- As increment.lua: indexed when new.
        if ver == 1 then redis.call('ZADD', index, 0, ARGV[a + 4]) end
        if has_marker then
          redis.call('HSET', marker, 'v', ARGV[a + 1], 'ver', 1)
          seen[marker] = nil
          redis.call('ZADD', index, 0, ARGV[a + 5])
        end
        done = {0, string.format('%.0f', new)}
      end
    end
    out[#out + 1] = done
    k, a = k + 2, a + 7
  elseif kind == 'd' then
    seen[KEYS[k]] = nil
    local n = redis.call('DEL', KEYS[k])
    redis.call('ZREM', index, ARGV[a + 1])
    out[#out + 1] = {n, ''}
    k, a = k + 1, a + 2
  end
end
return out
