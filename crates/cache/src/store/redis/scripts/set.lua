-- Store an entry under its tags.
-- KEYS[1]: the entry.
-- ARGV[1]: marker key prefix ("<prefix>~t:{").  ARGV[2]: members key prefix ("<prefix>~m:{").
-- ARGV[3]: TTL in ms.  ARGV[4]: the value (flag byte + data).
-- ARGV[5..]: triples (tag, candidate version, expected version or '').
-- With expected versions (from `lookup`), nothing is written when any tag has
-- been invalidated since: the result would be stale on arrival. Returns 1 if
-- stored, 0 if refused.
local ttl = tonumber(ARGV[3])

-- A tag's marker and member set must outlive every entry under the tag, so
-- their TTLs are only ever extended, never shortened (the reference design
-- reset them to the last writer's TTL, leaving long entries out of reach).
local function extend(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

for i = 5, #ARGV, 3 do
  if ARGV[i + 2] ~= '' and redis.call('GET', ARGV[1] .. ARGV[i] .. '}') ~= ARGV[i + 2] then
    return 0
  end
end

local header = {}
for i = 5, #ARGV, 3 do
  local tag = ARGV[i]
  local marker = ARGV[1] .. tag .. '}'
  local current = redis.call('GET', marker)
  if not current then
    current = ARGV[i + 1]
    redis.call('SET', marker, current)
  end
  extend(marker)
  -- The member set only serves to reclaim memory after an invalidation
  -- (sweep.lua); correctness never depends on it, so losing it to eviction
  -- costs memory until the TTL, not a stale read.
  local members = ARGV[2] .. tag .. '}'
  redis.call('SADD', members, KEYS[1])
  extend(members)
  header[#header + 1] = #tag .. '\n' .. tag .. current
end

redis.call('SET', KEYS[1], '1' .. #header .. '\n' .. table.concat(header) .. ARGV[4], 'PX', ttl)
return 1
