-- Reclaim the memory of entries made stale by invalidations, a batch at a
-- time so that no call blocks Redis for long. Entries written again since the
-- invalidation are current and are kept.
-- KEYS[1]: list of member sets to sweep.  ARGV[1]: marker key prefix.  ARGV[2]: batch size.
-- Returns -1 when there is nothing to sweep, else how many keys were examined.
local set = redis.call('LINDEX', KEYS[1], 0)
if not set then return -1 end
local members = redis.call('SPOP', set, ARGV[2])
if #members == 0 then
  redis.call('LPOP', KEYS[1])
  return 0
end
for _, key in ipairs(members) do
  local v = redis.call('GET', key)
  if v and not envelope_is_current(v, ARGV[1]) then redis.call('UNLINK', key) end
end
return #members
