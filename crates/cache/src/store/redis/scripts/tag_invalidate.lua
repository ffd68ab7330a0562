-- Redis Cluster, one tag's invalidation: invalidate.lua without the sweep
-- list, which lives in another slot (the caller pushes the handed-over set
-- there afterwards; a set it could not push expires with its TTL).
-- KEYS[1]: marker.  KEYS[2]: member set.  KEYS[3]: fresh name for the set
-- handed to the sweeper (same slot: `~g:{tag}:<random>`).
-- Returns how many entries were recorded under the tag.
redis.call('DEL', KEYS[1])
local n = redis.call('SCARD', KEYS[2])
if n > 0 then
  redis.call('RENAME', KEYS[2], KEYS[3])
end
return n
