-- Reclaim the memory of entries made stale by invalidations, a batch at a
-- time so that no call blocks Redis for long. Entries written again since the
-- invalidation are current and are kept. A deleted entry is also removed from
-- the member sets of its other tags, which would otherwise hold its name
-- until they expire or are invalidated themselves.
-- KEYS[1]: list of member sets to sweep.  ARGV[1]: marker key prefix.
-- ARGV[2]: batch size.  ARGV[3]: members key prefix ("<prefix>~m:{").
-- Returns -1 when there is nothing to sweep, else how many keys were examined.
local function forget(v, key)
  local count_end = string.find(v, '\n', 2, true)
  if string.sub(v, 1, 1) ~= '1' or not count_end then return end
  local count = tonumber(string.sub(v, 2, count_end - 1)) or 0
  local pos = count_end + 1
  for _ = 1, count do
    local len_end = string.find(v, '\n', pos, true)
    if not len_end then return end
    local len = tonumber(string.sub(v, pos, len_end - 1))
    if not len then return end
    redis.call('SREM', ARGV[3] .. string.sub(v, len_end + 1, len_end + len) .. '}', key)
    pos = len_end + len + 17
  end
end

local set = redis.call('LINDEX', KEYS[1], 0)
if not set then return -1 end
local members = redis.call('SPOP', set, ARGV[2])
if #members == 0 then
  redis.call('LPOP', KEYS[1])
  return 0
end
for _, key in ipairs(members) do
  local v = redis.call('GET', key)
  if v and not envelope_is_current(v, ARGV[1]) then
    redis.call('UNLINK', key)
    forget(v, key)
  end
end
return #members
