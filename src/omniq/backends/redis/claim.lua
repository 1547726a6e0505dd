-- claim: atomically lease up to `limit` due tasks to a worker (AsyncRedisTaskQueue._claim).
--
-- KEYS[1]  P..'queues'   set      the queue names (read when no queue list is given)
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  worker        worker id
-- ARGV[3]  now           epoch seconds (the caller's clock: due times, started_at)
-- ARGV[4]  lease         seconds the lease lasts, from the server's clock (TIME); lapsed
--                        leases are found by the server's clock too
-- ARGV[5]  limit
-- ARGV[6]  start         how many of the tasks taken start now; the others are claimed ahead
-- ARGV[7..]              queue names in strict priority order (none: all queues, merged)
--
-- Also touches: P..'delayed' (due tasks move to ready), P..'leases' (lapsed leases move back to
-- ready; taken tasks get a lease), P..'ready:<queue>' (ZPOPMIN, or ZRANGE + ZREM across all
-- queues), P..'t:<id>' (HMGET; HSET status, worker, lease, attempts; HSET or HDEL started),
-- P..'idx:<status>:<queue>'.
--
-- Attempts: the first `start` tasks taken, and any taken back from a lapsed lease (its worker
-- may have started it), count one (attempts + 1, started = now); the others, claimed ahead,
-- keep their attempts and lose 'b' (started) until mark_started counts them.
--
-- Returns {tasks, blobs, next_due}: tasks is msgpack of [id, FIELDS..., size] per taken task
-- (false for absent fields; size: of its blob, false when it has none), blobs the tasks' blobs
-- one after the other, next_due the earliest delayed run_at or lease expiry (false when none, or
-- when `limit` tasks were taken): when an idle worker should look again.

local worker, now = ARGV[2], ARGV[3]
local limit, start = tonumber(ARGV[5]), tonumber(ARGV[6])
local clock = server_now()
local lease_until = epoch(clock + tonumber(ARGV[4]))
local BATCH = 1000  -- moves per call: bounds the time one call blocks the server

-- Delayed tasks that came due, and tasks of lost workers, go (back) to their ready sets.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, BATCH)) do
    redis.call('ZREM', P .. 'delayed', id)
    local t = redis.call('HMGET', task_key(id), 's', 'q', 'p', 'n')
    if CLAIMABLE[t[1]] or (t[1] and not STATUSES[t[1]]) then  -- corrupt: the claim fails it
        redis.call('ZADD', P .. 'ready:' .. t[2], -number(t[3]), member(t[4], id))
    end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. epoch(clock),
                               'LIMIT', 0, BATCH)) do
    redis.call('ZREM', P .. 'leases', id)
    local t = redis.call('HMGET', task_key(id), 's', 'q', 'p', 'n')
    if t[1] == 'running' then
        redis.call('ZADD', P .. 'ready:' .. t[2], -number(t[3]), member(t[4], id))
    end
end

local taken, meta, blobs = {}, {}, {}
local function take(id)
    local key = task_key(id)
    -- FIELDS_AND_BLOB: s q p r e l w a b f x k n d
    local t = redis.call('HMGET', key, unpack(FIELDS_AND_BLOB))
    local status = t[1]
    if status and not STATUSES[status] then
        -- Corrupt (written from outside): readers see the task FAILED (omniq._corrupt), and
        -- so do the indexes, where it was still claimable.
        reindex(id, 'pending', 'failed', t[2], t[13])
        redis.call('ZREM', P .. 'idx:retrying:' .. t[2], id)
        return
    end
    if not (CLAIMABLE[status] or (status == 'running' and t[6] and number(t[6]) < clock)) then
        return  -- gone, or changed since it was queued: a stale entry
    end
    local counted = #taken < start or status == 'running'
    local attempts = tostring((tonumber(t[8]) or 0) + (counted and 1 or 0))
    redis.call('HSET', key, 's', 'running', 'w', worker, 'l', lease_until, 'a', attempts)
    if counted then
        redis.call('HSET', key, 'b', now)
    else
        redis.call('HDEL', key, 'b')
    end
    redis.call('ZADD', P .. 'leases', lease_until, id)
    reindex(id, status, 'running', t[2], t[13])
    t[1], t[6], t[7], t[8], t[9] = 'running', lease_until, worker, attempts, counted and now
    local blob = table.remove(t)
    table.insert(t, 1, id)
    t[#t + 1] = blob and #blob or false
    taken[#taken + 1] = id
    meta[#taken], blobs[#taken] = t, blob or ''
end

if #ARGV > 6 then
    for i = 7, #ARGV do
        local ready = P .. 'ready:' .. ARGV[i]
        while #taken < limit do
            local popped = redis.call('ZPOPMIN', ready, limit - #taken)
            if #popped == 0 then
                break
            end
            for j = 1, #popped, 2 do
                take(id_of(popped[j]))
            end
        end
        if #taken >= limit then
            break
        end
    end
else
    -- No queue list: every queue alike, by priority then insertion order.
    local names = redis.call('SMEMBERS', KEYS[1])
    while #taken < limit do
        local heads = {}
        for _, name in ipairs(names) do
            local found = redis.call('ZRANGE', P .. 'ready:' .. name, 0, limit - #taken - 1,
                                     'WITHSCORES')
            for j = 1, #found, 2 do
                heads[#heads + 1] = {tonumber(found[j + 1]), found[j], name}
            end
        end
        if #heads == 0 then
            break
        end
        table.sort(heads, function(a, b)
            if a[1] ~= b[1] then
                return a[1] < b[1]
            end
            return a[2] < b[2]
        end)
        for j = 1, math.min(#heads, limit - #taken) do
            redis.call('ZREM', P .. 'ready:' .. heads[j][3], heads[j][2])
            take(id_of(heads[j][2]))
        end
    end
end

-- Only a worker that did not get all it asked for may go idle: tell it when to look again.
local next_due = false
if #taken < limit then
    for _, set in ipairs({'delayed', 'leases'}) do
        local first = redis.call('ZRANGE', P .. set, 0, 0, 'WITHSCORES')
        if #first > 0 and (not next_due or tonumber(first[2]) < tonumber(next_due)) then
            next_due = first[2]
        end
    end
end
return {cmsgpack.pack(meta), table.concat(blobs), next_due}
