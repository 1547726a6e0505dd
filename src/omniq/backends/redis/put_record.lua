-- put_record: store a record, unconditionally or as a compare-and-set on its version
-- (AsyncRedisTaskQueue._put_record and _swap_record).
--
-- KEYS[1]  P..'rec:<kind>'  hash  field: the record's key; value: '<version>:<data>'
-- ARGV[1]  key              the record's key (the hash field)
-- ARGV[2]  data             the record's bytes
-- ARGV[3]  expected         the version the record must have (0: absent), or '' for any
--
-- Touches no other key. Returns the new version (the stored one + 1; 1 for a new record), or
-- nil when the stored version is not `expected` (nothing written).

local stored = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if stored then
    version = tonumber(string.match(stored, '^(%d+):'))
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version then
    return false
end
version = version + 1
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', version) .. ':' .. ARGV[2])
return version
