-- finish: write the outcome of claimed tasks, compare-and-set per task
-- (AsyncRedisTaskQueue._finish).
--
-- KEYS[1]  P..'leases'   zset     lease expiry of each RUNNING task (ZREM)
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  worker        worker id: only its claims may be finished
-- ARGV[3]  now           epoch seconds: decides between ready and delayed for a retry
-- ARGV[4]  rows          msgpack array of [id, attempts, s, p, r, e, l, w, b, f, x] (strings;
--                        '' = absent): the claim's attempt count, then the new state
--
-- Also touches: P..'t:<id>' (HMGET; HSET/HDEL), P..'ready:<queue>', P..'delayed'
-- (a retry goes back to one of them), P..'idx:<status>:<queue>', P..'key:<key>' (deleted when
-- the task becomes final), and publishes on channel P..'wake' when a task became claimable.
--
-- A row is written only if its task is still RUNNING under `worker` with the same attempts
-- (a task cancelled or re-claimed meanwhile is left alone). Returns the ids written.

local worker, now = ARGV[2], ARGV[3]
local rows = cmsgpack.unpack(ARGV[4])
local NAMES = {[6] = 'e', [7] = 'l', [8] = 'w', [9] = 'b', [10] = 'f', [11] = 'x'}
local written, woken = {}, {}

for _, row in ipairs(rows) do
    local id, attempts, status, priority, run_at = row[1], row[2], row[3], row[4], row[5]
    local key = task_key(id)
    local t = redis.call('HMGET', key, 's', 'w', 'a', 'q', 'n', 'k')
    if t[1] == 'running' and t[2] == worker and t[3] == attempts then
        local queue, seq = t[4], t[5]
        redis.call('ZREM', KEYS[1], id)
        redis.call('ZREM', P .. 'ready:' .. queue, member(seq, id))  -- a lapsed, untaken lease
        local set, unset = {'s', status, 'p', priority, 'r', run_at}, {}
        for index, name in pairs(NAMES) do
            if row[index] ~= '' then
                set[#set + 1] = name
                set[#set + 1] = row[index]
            else
                unset[#unset + 1] = name
            end
        end
        redis.call('HSET', key, unpack(set))
        if #unset > 0 then
            redis.call('HDEL', key, unpack(unset))
        end
        local lease = row[7] ~= '' and row[7] or false
        schedule(id, status, queue, priority, seq, run_at, lease, now)
        reindex(id, 'running', status, queue, seq)
        if FINAL[status] then
            release_key(t[6], id)
        elseif CLAIMABLE[status] then
            woken[queue] = true
        end
        written[#written + 1] = id
    end
end
publish_wake(woken)
return written
