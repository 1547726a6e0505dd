-- insert: store new tasks in one atomic step (AsyncRedisTaskQueue._insert).
--
-- KEYS[1]  P..'seq'      string   INCRBY: one insertion number per task
-- ARGV[1]  P             the project's key prefix
-- ARGV[2]  now           epoch seconds: decides between ready and delayed
-- ARGV[3]  rows          msgpack array of [id, s, q, p, r, e, l, w, a, b, f, x, k, size]
--                        (strings; '' = absent), fields as in keys.py; size: of the row's blob
-- ARGV[4]  blobs         the rows' immutable blobs (field 'd'), one after the other
--
-- Also touches: P..'t:<id>' (HSET), P..'key:<key>' (GET/SET), P..'queues' (SADD),
-- P..'idx:<status>:<queue>', P..'ready:<queue>', P..'delayed', P..'leases' (ZADD), and
-- publishes the queues that got a claimable task on channel P..'wake'.
--
-- Returns "<row> <id> ..." (space-separated, rows counted from 1) for each row that was not
-- stored because a live task already holds its idempotency key: that task's id. A row whose
-- id is already stored is left alone (a retried call is harmless).

local now = ARGV[2]
local rows = cmsgpack.unpack(ARGV[3])
local OPTIONAL = {[6] = 'e', [7] = 'l', [8] = 'w', [10] = 'b', [11] = 'f', [12] = 'x', [13] = 'k'}
local CHUNK = 1000  -- score/member pairs per ZADD (Lua's unpack has a limit)
local seq = redis.call('INCRBY', KEYS[1], #rows) - #rows
local taken_over, queues, woken = {}, {}, {}
local adds = {}  -- zset key -> {score, member, ...}: one ZADD per set, not per task
local offset = 1

local function add(set, score, name)
    local entries = adds[set]
    if not entries then
        entries = {}
        adds[set] = entries
    end
    entries[#entries + 1] = score
    entries[#entries + 1] = name
end

for i, row in ipairs(rows) do
    local size = tonumber(row[14])
    local blob = string.sub(ARGV[4], offset, offset + size - 1)
    offset = offset + size
    local id, status, queue, priority, run_at = row[1], row[2], row[3], row[4], row[5]
    local key = row[13]
    local holder = false
    if key ~= '' then
        holder = redis.call('GET', P .. 'key:' .. key)
        if holder and not is_live(holder) then
            holder = false
        end
    end
    if not holder and redis.call('EXISTS', task_key(id)) == 1 then
        holder = id
    end
    if holder then
        if holder ~= id then
            taken_over[#taken_over + 1] = i
            taken_over[#taken_over + 1] = holder
        end
    else
        seq = seq + 1
        local fields = {'s', status, 'q', queue, 'p', priority, 'r', run_at, 'a', row[9],
                        'n', seq, 'd', blob}
        for index, name in pairs(OPTIONAL) do
            if row[index] ~= '' then
                fields[#fields + 1] = name
                fields[#fields + 1] = row[index]
            end
        end
        redis.call('HSET', task_key(id), unpack(fields))
        if key ~= '' and not FINAL[status] then
            redis.call('SET', P .. 'key:' .. key, id)
        end
        add(P .. 'idx:' .. status .. ':' .. queue, seq, id)
        if CLAIMABLE[status] then
            if tonumber(run_at) <= tonumber(now) then
                add(P .. 'ready:' .. queue, -tonumber(priority), member(seq, id))
            else
                add(P .. 'delayed', run_at, id)
            end
            woken[queue] = true  -- due now, or waiters look again at when it comes due
        elseif status == 'running' and row[7] ~= '' then
            add(P .. 'leases', row[7], id)
        end
        queues[queue] = true
    end
end

for set, entries in pairs(adds) do
    for first = 1, #entries, 2 * CHUNK do
        redis.call('ZADD', set, unpack(entries, first, math.min(first + 2 * CHUNK - 1, #entries)))
    end
end
local names = {}
for name in pairs(queues) do
    names[#names + 1] = name
end
if #names > 0 then
    redis.call('SADD', P .. 'queues', unpack(names))
end
publish_wake(woken)
return table.concat(taken_over, ' ')
