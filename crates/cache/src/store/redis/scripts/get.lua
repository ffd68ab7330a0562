-- Read an entry, only if none of its tags was invalidated since it was written.
-- KEYS[1]: the entry.  ARGV[1]: marker key prefix ("<prefix>~t:{").
-- Returns the envelope, or nil. A stale entry is deleted on the way.
local v = redis.call('GET', KEYS[1])
if not v then return false end
if envelope_is_current(v, ARGV[1]) then return v end
redis.call('UNLINK', KEYS[1])
return false
