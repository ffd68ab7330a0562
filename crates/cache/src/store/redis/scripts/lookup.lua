-- The first step of `remember`: the entry if it is current, otherwise the
-- current versions of the tags the loader's result will be stored under.
-- Taking the versions *before* the loader runs is what prevents resurrection:
-- if a tag is invalidated while the loader runs, its version changes and the
-- `set` script refuses the result.
-- KEYS[1]: the entry.  ARGV[1]: marker key prefix.  ARGV[2]: TTL in ms.
-- ARGV[3..]: pairs (tag, candidate version used if the tag has no marker).
-- Returns {1, envelope} on a hit, {0, version, version, ...} on a miss.
local v = redis.call('GET', KEYS[1])
if v then
  if envelope_is_current(v, ARGV[1]) then return {1, v} end
  redis.call('UNLINK', KEYS[1])
end
local versions = {0}
for i = 3, #ARGV, 2 do
  local marker = ARGV[1] .. ARGV[i] .. '}'
  local current = redis.call('GET', marker)
  if not current then
    current = ARGV[i + 1]
    redis.call('SET', marker, current, 'PX', ARGV[2])
  end
  versions[#versions + 1] = current
end
return versions
