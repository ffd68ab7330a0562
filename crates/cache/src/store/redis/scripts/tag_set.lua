-- Redis Cluster, `set`'s step for one tag, before the entry is written: the
-- tag's marker and member set share the tag's slot (`~t:{tag}`, `~m:{tag}`),
-- the entry does not. Returns the tag's current version, or false when it is
-- no longer the expected one (the tag was invalidated while the loader ran:
-- the entry must not be written).
--
-- Why the entry may be written afterwards, outside this step: it records the
-- version returned here, and is readable only while the marker still has it.
-- An invalidation between this step and the entry's write deletes the marker,
-- and a marker created again has a fresh random version: the entry is
-- unreadable from the moment it is written.
-- KEYS[1]: marker.  KEYS[2]: member set.
-- ARGV[1]: the entry's key.  ARGV[2]: candidate version.
-- ARGV[3]: expected version or ''.  ARGV[4]: TTL in ms.
local ttl = tonumber(ARGV[4])
local current = redis.call('GET', KEYS[1])
if ARGV[3] ~= '' and current ~= ARGV[3] then return false end
if not current then
  current = ARGV[2]
  redis.call('SET', KEYS[1], current)
end
-- Only ever extended (see set.lua).
local function extend(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
extend(KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
extend(KEYS[2])
return current
