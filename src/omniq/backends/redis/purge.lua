-- purge: delete up to `max` tasks that are not RUNNING (AsyncRedisTaskQueue._purge calls it
-- until it deletes fewer than `max`, so no single call blocks the server for long).
--
-- KEYS[1]  P..'queues'   set      the queue names (read when no queue is given)
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  max           how many tasks at most
-- ARGV[3]                the queue to purge (absent: every queue)
--
-- Also touches: P..'idx:<status>:<queue>' (read and ZREM), P..'t:<id>' (DEL),
-- P..'ready:<queue>', P..'delayed', P..'leases' (ZREM), P..'key:<key>' (released).
--
-- Returns how many tasks were deleted.

local max = tonumber(ARGV[2])
local names = ARGV[3] and {ARGV[3]} or redis.call('SMEMBERS', KEYS[1])
local STATUSES = {'pending', 'waiting', 'retrying', 'success', 'failed', 'cancelled', 'expired'}
local deleted = 0
for _, queue in ipairs(names) do
    for _, status in ipairs(STATUSES) do
        if deleted >= max then
            return deleted
        end
        local index = P .. 'idx:' .. status .. ':' .. queue
        for _, id in ipairs(redis.call('ZRANGE', index, 0, max - deleted - 1)) do
            local t = redis.call('HMGET', task_key(id), 'n', 'k')
            if t[1] then
                unschedule(id, queue, t[1])
            end
            release_key(t[2], id)
            redis.call('DEL', task_key(id))
            redis.call('ZREM', index, id)
            deleted = deleted + 1
        end
    end
end
return deleted
