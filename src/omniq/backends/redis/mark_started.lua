-- mark_started: count the attempts of tasks claimed ahead that started, compare-and-set per
-- task (AsyncRedisTaskQueue._mark_started).
--
-- KEYS[1]  P..'leases'   zset     not touched: it routes the call to the project's slot
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  worker        worker id: only its claims may be marked
-- ARGV[3..]              per task three values: id, its new attempts, started (epoch seconds)
--
-- Also touches: P..'t:<id>' (HMGET; HSET attempts and started).
--
-- A task is written only if it is still RUNNING under `worker`, claimed ahead (no started) with
-- one attempt fewer. Returns the ids written.

local worker = ARGV[2]
local written = {}
for i = 3, #ARGV, 3 do
    local id, attempts, started = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local key = task_key(id)
    local t = redis.call('HMGET', key, 's', 'w', 'a', 'b')
    if t[1] == 'running' and t[2] == worker and not t[4]
            and tonumber(t[3]) == tonumber(attempts) - 1 then
        redis.call('HSET', key, 'a', attempts, 'b', started)
        written[#written + 1] = id
    end
end
return written
