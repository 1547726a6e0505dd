-- transition: change a task's state if its status is one of the given ones (cancel, requeue;
-- AsyncRedisTaskQueue._transition).
--
-- KEYS[1]  P..'t:<id>'   hash     the task
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  now           epoch seconds
-- ARGV[3]  id            the task id
-- ARGV[4]  from          the allowed current statuses, space-separated
-- ARGV[5]  changes       msgpack map of field -> new value ('' = remove the field)
--
-- Also touches: P..'ready:<queue>', P..'delayed', P..'leases' (the task leaves them and joins
-- the one its new state calls for), P..'idx:<status>:<queue>', P..'key:<key>' (released when
-- the task becomes final, taken again when it becomes live), and publishes on channel
-- P..'wake' when the task became claimable.
--
-- Returns {task, blob} as the claim script does for one task, or false when the status did not
-- match. Fails with OMNIQ_KEY_TAKEN when the task would become live while another live task
-- holds its idempotency key.

local now, id = ARGV[2], ARGV[3]
local key = KEYS[1]
local t = redis.call('HMGET', key, 's', 'q', 'n', 'k')
local old = t[1]
if not old then
    return false
end
local allowed = false
for status in string.gmatch(ARGV[4], '%S+') do
    if status == old then
        allowed = true
    end
end
if not allowed then
    return false
end
local queue, seq, idem = t[2], t[3], t[4]
local changes = cmsgpack.unpack(ARGV[5])
local new = changes['s'] or old
if idem and FINAL[old] and not FINAL[new] then
    local holder = redis.call('GET', P .. 'key:' .. idem)
    if holder and holder ~= id and is_live(holder) then
        return redis.error_reply('OMNIQ_KEY_TAKEN task ' .. holder ..
                                 ' is live and holds idempotency key ' .. idem)
    end
end

unschedule(id, queue, seq)
local set, unset = {}, {}
for name, value in pairs(changes) do
    if value == '' then
        unset[#unset + 1] = name
    else
        set[#set + 1] = name
        set[#set + 1] = value
    end
end
if #set > 0 then
    redis.call('HSET', key, unpack(set))
end
if #unset > 0 then
    redis.call('HDEL', key, unpack(unset))
end
local s = redis.call('HMGET', key, 'p', 'r', 'l')
schedule(id, new, queue, s[1], seq, s[2], s[3], now)
if CLAIMABLE[new] then
    redis.call('PUBLISH', P .. 'wake', queue)  -- due now, or waiters look at when it is due
end
reindex(id, old, new, queue, seq)
if idem then
    if FINAL[new] then
        release_key(idem, id)
    else
        redis.call('SET', P .. 'key:' .. idem, id)
    end
end
local fields, blob = read_task(id)
return {cmsgpack.pack({fields}), blob}
