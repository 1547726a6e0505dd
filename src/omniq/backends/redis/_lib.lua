-- Shared by every task script (omniq.backends.redis.client.load_script prepends it). Keys are named in
-- omniq/_redis/keys.py; P (ARGV[1]) is the project's prefix "omniq:{<project>}:", so every key
-- built here shares the project's hash tag and slot with KEYS[1].
--
-- Keys these helpers touch: P..'t:<id>' (hash), P..'ready:<queue>', P..'delayed',
-- P..'leases', P..'idx:<status>:<queue>' (zsets), P..'key:<key>' (string); they publish on
-- channel P..'wake'. TIME reads the server's clock.

local P = ARGV[1]

local CLAIMABLE = {pending = true, retrying = true}
local STATUSES = {
    pending = true, waiting = true, running = true, retrying = true,
    success = true, failed = true, cancelled = true, expired = true,
}
local FINAL = {success = true, failed = true, cancelled = true, expired = true}
-- The order in which task fields are returned (keys.py: TASK_FIELDS, without 'd').
local FIELDS = {'s', 'q', 'p', 'r', 'e', 'l', 'w', 'a', 'b', 'f', 'x', 'k', 'n'}
local FIELDS_AND_BLOB = {'s', 'q', 'p', 'r', 'e', 'l', 'w', 'a', 'b', 'f', 'x', 'k', 'n', 'd'}

-- Leases run on the server's clock, so that hosts whose clocks disagree never cut one short.
local function server_now()
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function epoch(seconds)
    return string.format('%.6f', seconds)
end

local function task_key(id)
    return P .. 't:' .. id
end

-- The ready-set member: the seq as 16 hex digits sorts FIFO among equal priorities.
local function member(seq, id)
    return string.format('%016x', tonumber(seq)) .. ':' .. id
end

local function id_of(ready_member)
    return string.sub(ready_member, 18)
end

-- A stored number as a script reads it. A field that is not a number (corrupt: written from
-- outside) reads as 0, so its task is still handed out, to be failed by the worker
-- (omniq._corrupt), instead of breaking every call of the script.
local function number(value)
    return tonumber(value) or 0
end

-- Remove a task from every scheduling set it may be in (ready, delayed, leases).
local function unschedule(id, queue, seq)
    redis.call('ZREM', P .. 'ready:' .. queue, member(seq, id))
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('ZREM', P .. 'leases', id)
end

-- Put a task in the scheduling set its state calls for; returns true if it is claimable now.
local function schedule(id, status, queue, priority, seq, run_at, lease_until, now)
    if CLAIMABLE[status] then
        if number(run_at) <= tonumber(now) then
            redis.call('ZADD', P .. 'ready:' .. queue, -number(priority), member(seq, id))
            return true
        end
        redis.call('ZADD', P .. 'delayed', run_at, id)
    elseif status == 'running' and lease_until then
        redis.call('ZADD', P .. 'leases', lease_until, id)
    end
    return false
end

-- Move a task between the per-status indexes.
local function reindex(id, old_status, new_status, queue, seq)
    if old_status ~= new_status then
        redis.call('ZREM', P .. 'idx:' .. old_status .. ':' .. queue, id)
        redis.call('ZADD', P .. 'idx:' .. new_status .. ':' .. queue, seq, id)
    end
end

local function is_live(id)
    local status = redis.call('HGET', task_key(id), 's')
    return status and not FINAL[status]
end

-- Drop an idempotency key if this task holds it.
local function release_key(key, id)
    if key and redis.call('GET', P .. 'key:' .. key) == id then
        redis.call('DEL', P .. 'key:' .. key)
    end
end

-- A task as returned to Python: {id, FIELDS... (false when absent), size of its blob} and the
-- blob (field 'd'; '' and size false when it has none).
local function read_task(id)
    local fields = redis.call('HMGET', task_key(id), unpack(FIELDS_AND_BLOB))
    local blob = table.remove(fields)
    table.insert(fields, 1, id)
    fields[#fields + 1] = blob and #blob or false
    return fields, blob or ''
end

local function publish_wake(queues)
    local names = {}
    for name in pairs(queues) do
        names[#names + 1] = name
    end
    if #names > 0 then
        redis.call('PUBLISH', P .. 'wake', table.concat(names, '\n'))
    end
end

