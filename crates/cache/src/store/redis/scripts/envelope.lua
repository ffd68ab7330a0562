-- Shared by the scripts that read entries (prepended to each of them).
--
-- An entry's envelope records, for each of its tags, the tag's version when the
-- entry was written (layout in src/codec.rs). The entry is current only while
-- every one of those tags still has that version: invalidating a tag deletes
-- its marker, so one command makes every entry under the tag unreadable, and a
-- marker lost to eviction makes them unreadable too (a miss, never a stale hit).
local function envelope_is_current(v, marker_prefix)
  if string.sub(v, 1, 1) ~= '1' then return false end
  local count_end = string.find(v, '\n', 2, true)
  if not count_end then return false end
  local count = tonumber(string.sub(v, 2, count_end - 1))
  local pos = count_end + 1
  for _ = 1, count do
    local len_end = string.find(v, '\n', pos, true)
    if not len_end then return false end
    local len = tonumber(string.sub(v, pos, len_end - 1))
    local tag = string.sub(v, len_end + 1, len_end + len)
    local version = string.sub(v, len_end + len + 1, len_end + len + 16)
    if redis.call('GET', marker_prefix .. tag .. '}') ~= version then return false end
    pos = len_end + len + 17
  end
  return true
end
