-- Reclaim the memory of entries made stale by invalidations, a batch at a
-- time so that no call blocks Redis for long. Entries written again since the
-- invalidation are current and are kept. A deleted entry is also removed from
-- the member sets of its other tags, which would otherwise hold its name
-- until they expire or are invalidated themselves.
-- KEYS[1]: list of member sets to sweep.  ARGV[1]: marker key prefix.
-- ARGV[2]: batch size.  ARGV[3]: members key prefix ("<prefix>~m:{").
-- Returns -1 when there is nothing to sweep, else how many keys were examined.
local set = redis.call('LINDEX', KEYS[1], 0)
if not set then return -1 end
local members = redis.call('SPOP', set, ARGV[2])
if #members == 0 then
  redis.call('LPOP', KEYS[1])
  return 0
end

-- Markers read once per batch: the entries of a batch share their tags.
local markers = {}
local function marker(tag)
  local v = markers[tag]
  if v == nil then
    v = redis.call('GET', ARGV[1] .. tag .. '}') or false
    markers[tag] = v
  end
  return v
end

-- Parses an envelope's header (layout in src/codec.rs): returns whether every
-- tag still has the recorded version, and the tags; nil if malformed.
local function check(v)
  if string.sub(v, 1, 1) ~= '1' then return nil end
  local count_end = string.find(v, '\n', 2, true)
  if not count_end then return nil end
  local count = tonumber(string.sub(v, 2, count_end - 1))
  if not count then return nil end
  local pos = count_end + 1
  local tags, current = {}, true
  for i = 1, count do
    local len_end = string.find(v, '\n', pos, true)
    if not len_end then return nil end
    local len = tonumber(string.sub(v, pos, len_end - 1))
    if not len then return nil end
    local tag = string.sub(v, len_end + 1, len_end + len)
    if current and marker(tag) ~= string.sub(v, len_end + len + 1, len_end + len + 16) then
      current = false
    end
    tags[i] = tag
    pos = len_end + len + 17
  end
  return current, tags
end

for _, key in ipairs(members) do
  local v = redis.call('GET', key)
  if v then
    local current, tags = check(v)
    if not current then
      redis.call('UNLINK', key)
      for _, tag in ipairs(tags or {}) do
        redis.call('SREM', ARGV[3] .. tag .. '}', key)
      end
    end
  end
end
return #members
