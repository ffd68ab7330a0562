-- Redis Cluster, `lookup`'s step for one tag: the tag's current version,
-- created (with the candidate) if it has no marker. One key, so one slot.
-- KEYS[1]: the marker.  ARGV[1]: candidate version.  ARGV[2]: TTL in ms.
local current = redis.call('GET', KEYS[1])
if not current then
  current = ARGV[1]
  redis.call('SET', KEYS[1], current, 'PX', ARGV[2])
end
return current
