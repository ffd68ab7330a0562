-- Redis Cluster, the sweeper's deletion of one stale entry: the entry is
-- deleted only if it still begins with the header that was found stale (it
-- may have been written again since, under current versions).
-- KEYS[1]: the entry.  ARGV[1]: the header (tags and versions) found stale.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('UNLINK', KEYS[1])
end
return 0
