-- put_results: store results with their expiry and tell waiters (AsyncRedisResultStorage).
--
-- KEYS[1]  P..'r:<first task id>'  string  routes the call (every key below shares its slot)
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  ids           task ids, space-separated
-- ARGV[3]  sizes         byte size of each encoded result, space-separated
-- ARGV[4]  ttls          milliseconds until each result expires ('-' = never), space-separated
-- ARGV[5]  data          the encoded results, one after the other
-- ARGV[6]  inline        results up to this size travel in the notification too
--
-- Writes P..'r:<id>' for each result (SET, with PX when it expires) and publishes one message
-- on channel P..'results': a header line "<id> <size or -> ..." (size: that result follows in
-- the body; '-': it is too large, read it from its key), a newline, then the inlined results.

local P = ARGV[1]
local ids, sizes, ttls = {}, {}, {}
for id in string.gmatch(ARGV[2], '%S+') do
    ids[#ids + 1] = id
end
for size in string.gmatch(ARGV[3], '%S+') do
    sizes[#sizes + 1] = tonumber(size)
end
for ttl in string.gmatch(ARGV[4], '%S+') do
    ttls[#ttls + 1] = ttl
end
local inline = tonumber(ARGV[6])
local header, body = {}, {}
local offset = 1
for i, id in ipairs(ids) do
    local data = string.sub(ARGV[5], offset, offset + sizes[i] - 1)
    offset = offset + sizes[i]
    if ttls[i] == '-' then
        redis.call('SET', P .. 'r:' .. id, data)
    else
        redis.call('SET', P .. 'r:' .. id, data, 'PX', ttls[i])
    end
    header[#header + 1] = id
    if sizes[i] <= inline then
        header[#header + 1] = sizes[i]
        body[#body + 1] = data
    else
        header[#header + 1] = '-'
    end
end
redis.call('PUBLISH', P .. 'results', table.concat(header, ' ') .. '\n' .. table.concat(body))
return #ids
