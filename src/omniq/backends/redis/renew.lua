-- renew: extend the leases a worker still holds (AsyncRedisTaskQueue._renew).
--
-- KEYS[1]  P..'leases'   zset     lease expiry of each RUNNING task
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  worker        worker id
-- ARGV[3]  lease         seconds the lease lasts from now, by the server's clock (TIME)
-- ARGV[4..]              task ids
--
-- Also touches: P..'t:<id>' (HMGET; HSET 'l'), P..'ready:<queue>' (ZREM: a lapsed lease that
-- nobody re-claimed yet is taken back by its worker).
--
-- Returns the ids still RUNNING under this worker.

local worker, lease_until = ARGV[2], epoch(server_now() + tonumber(ARGV[3]))
local held = {}
for i = 4, #ARGV do
    local id = ARGV[i]
    local key = task_key(id)
    local t = redis.call('HMGET', key, 's', 'w', 'q', 'n')
    if t[1] == 'running' and t[2] == worker then
        redis.call('HSET', key, 'l', lease_until)
        redis.call('ZADD', KEYS[1], lease_until, id)
        redis.call('ZREM', P .. 'ready:' .. t[3], member(t[4], id))
        held[#held + 1] = id
    end
end
return held
