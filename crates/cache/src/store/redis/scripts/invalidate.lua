-- Invalidate one tag in O(1): delete its marker, which makes every entry
-- recorded under the old version unreadable at once, and hand its member set
-- to the sweeper, which deletes the stale entries later in small batches.
-- KEYS[1]: marker.  KEYS[2]: member set.  KEYS[3]: list of sets to sweep.
-- ARGV[1]: a fresh key name for the member set being handed over.
-- Returns how many entries were recorded under the tag (an upper bound: some
-- may have expired or been overwritten since).
redis.call('DEL', KEYS[1])
local n = redis.call('SCARD', KEYS[2])
if n > 0 then
  redis.call('RENAME', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
return n
