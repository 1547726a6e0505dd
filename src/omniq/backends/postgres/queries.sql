-- OmniQ's PostgreSQL statements, one "-- name: X" section each (read by omniq.backends.postgres.sql).
-- Positional parameters ($1 is always the project). Python fills only the {braces}, and only
-- from fixed lists of column names and filter clauses, never from values. asyncpg prepares each
-- statement once per connection and reuses it.

-- --- tasks -----------------------------------------------------------------------------------

-- name: insert_tasks
-- One row per array element, in array order (so `seq` follows the list). {columns}: the columns
-- sent (those without a value in the whole batch are left out and stay NULL), {arrays} their
-- typed parameters from $2 on. A live task with the same key wins: this row is skipped. Idle
-- workers are woken by the notification ({channel}: the project's task channel, {payload}: the
-- queue names as a JSON list), sent when the insert commits.
WITH inserted AS (
    INSERT INTO omniq_tasks (project, {columns})
    SELECT $1, * FROM unnest({arrays})
    ON CONFLICT (project, key)
        WHERE key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired')
    DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted, pg_notify({channel}, {payload});

-- name: live_keys
SELECT key, id FROM omniq_tasks
WHERE project = $1 AND key = ANY ($2::text[])
    AND key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired');

-- name: get_task
SELECT * FROM omniq_tasks WHERE project = $1 AND id = $2;

-- name: claim_from_queues
-- $2: the queue names in priority order (no duplicates). Each queue is an ordered scan of
-- omniq_tasks_ready_by_queue that locks rows as it goes (SKIP LOCKED passes over rows another
-- claimer holds) and stops once it has enough rows: the lateral join can only run as a nested
-- loop over the list, in list order, so later queues are not even read when earlier ones
-- suffice. Lapsed leases (few) are merged in by the same order. The chosen rows are updated by
-- their physical address (ctid), found by the locking scan: a row changed by another
-- transaction between this statement's snapshot and its lock is left out (still claimable).
-- The batch size is written into the text (one prepared statement per size): as a parameter,
-- the planner would have to guess it, and would re-plan this statement at every execution.
-- A run_at of 'infinity' (no enqueue writes it: a corrupt row) counts as due, so the task is
-- handed out to fail (omniq._corrupt) instead of staying pending forever.
-- The commit does not wait for its WAL flush (synchronous_commit off for this transaction
-- only): a claim lost to a server crash puts its tasks back as they were, so they run again
-- (at least once, as after any crash); enqueues and outcomes stay fully durable.
-- Attempts: the first $6 tasks in claim order start now and count one; the others are claimed
-- ahead (no attempt, no started_at) unless taken back from a lapsed lease (t.status is the row
-- before this update).
WITH relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), lapsed AS (
    SELECT ctid AS row_id, array_position($2::text[], queue_name) AS pos, priority, seq
    FROM omniq_tasks
    WHERE project = $1 AND status = 'running' AND lease_until < $3
        AND queue_name = ANY ($2::text[])
    ORDER BY lease_until
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT r.row_id, q.pos, r.priority, r.seq
    FROM unnest($2::text[]) WITH ORDINALITY AS q (name, pos)
    CROSS JOIN LATERAL (
        SELECT ctid AS row_id, priority, seq FROM omniq_tasks
        WHERE project = $1 AND queue_name = q.name
            AND status IN ('pending', 'retrying') AND (run_at <= $3 OR run_at = 'infinity')
        ORDER BY priority DESC, seq
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED
    ) AS r
    LIMIT {limit}
), chosen AS (
    SELECT row_id, row_number() OVER (ORDER BY pos, priority DESC, seq) AS n
    FROM (SELECT * FROM lapsed UNION ALL SELECT * FROM ready) AS c
    ORDER BY n
    LIMIT {limit}
)
UPDATE omniq_tasks AS t
SET status = 'running', worker_id = $4, lease_until = $5,
    attempts = t.attempts + CASE WHEN t.status = 'running' OR chosen.n <= $6 THEN 1 ELSE 0 END,
    started_at = CASE WHEN t.status = 'running' OR chosen.n <= $6 THEN $3 END
FROM chosen, relaxed
WHERE t.ctid = chosen.row_id
RETURNING t.*;

-- name: claim_from_any
-- The same over every queue of the project, on omniq_tasks_ready.
WITH relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), lapsed AS (
    SELECT ctid AS row_id, priority, seq FROM omniq_tasks
    WHERE project = $1 AND status = 'running' AND lease_until < $2
    ORDER BY lease_until
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT ctid AS row_id, priority, seq FROM omniq_tasks
    WHERE project = $1 AND status IN ('pending', 'retrying')
        AND (run_at <= $2 OR run_at = 'infinity')
    ORDER BY priority DESC, seq
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT row_id, row_number() OVER (ORDER BY priority DESC, seq) AS n
    FROM (SELECT * FROM lapsed UNION ALL SELECT * FROM ready) AS c
    ORDER BY n
    LIMIT {limit}
)
UPDATE omniq_tasks AS t
SET status = 'running', worker_id = $3, lease_until = $4,
    attempts = t.attempts + CASE WHEN t.status = 'running' OR chosen.n <= $5 THEN 1 ELSE 0 END,
    started_at = CASE WHEN t.status = 'running' OR chosen.n <= $5 THEN $2 END
FROM chosen, relaxed
WHERE t.ctid = chosen.row_id
RETURNING t.*;

-- name: due_in_queues
-- For an idle worker: when the next task in these queues comes due (in the past: one is due
-- now, the claim may have raced a commit) and when the next lease there lapses. min() reads
-- the first entry of an index ordered by that time.
SELECT
    (
        SELECT min(run_at) FROM omniq_tasks
        WHERE project = $1 AND status IN ('pending', 'retrying') AND queue_name = ANY ($2::text[])
    ) AS next_run,
    (
        SELECT min(lease_until) FROM omniq_tasks
        WHERE project = $1 AND status = 'running' AND queue_name = ANY ($2::text[])
    ) AS next_lease;

-- name: due_in_any
SELECT
    (
        SELECT min(run_at) FROM omniq_tasks
        WHERE project = $1 AND status IN ('pending', 'retrying')
    ) AS next_run,
    (
        SELECT min(lease_until) FROM omniq_tasks WHERE project = $1 AND status = 'running'
    ) AS next_lease;

-- name: renew
-- omniq_renew (schema.sql): the leases still held, $3 sorted by id.
SELECT omniq_renew($1, $2, $3::text[], $4) AS id;

-- name: mark_started
-- omniq_mark_started (schema.sql, migration 3): $3 ids sorted (rows are locked in that order, as
-- omniq_renew and omniq_finish do), $4 their new attempts, $5 their start times; the ids
-- written.
SELECT omniq_mark_started($1, $2, $3::text[], $4::integer[], $5::timestamptz[]) AS id;

-- name: finish
-- omniq_finish (schema.sql) for a batch sorted by id. $14/$15: channel and payload of a wake-up
-- for idle workers, sent only when $14 is not NULL (a retry or a release).
SELECT
    array(
        SELECT omniq_finish(
            $1, $2, $3::text[], $4::integer[], $5::text[], $6::integer[], $7::timestamptz[],
            $8::timestamptz[], $9::timestamptz[], $10::text[], $11::timestamptz[],
            $12::timestamptz[], $13::jsonb[]
        )
    ) AS ids,
    (SELECT count(*) FROM (SELECT pg_notify($14, $15) WHERE $14::text IS NOT NULL) AS n) AS woke;

-- name: finish_with_results
-- finish ($1-$15) and put_results ($16-$23) in one statement: one round trip, one commit, and
-- a task's outcome is never written without its result.
WITH stored AS (
    INSERT INTO omniq_results (project, task_id, expires_at, finished_at, schedule_id, data)
    SELECT $16, * FROM unnest(
        $17::text[], $18::timestamptz[], $19::timestamptz[], $20::text[], $21::bytea[]
    )
    ON CONFLICT (project, task_id) DO UPDATE SET
        expires_at = excluded.expires_at, finished_at = excluded.finished_at,
        schedule_id = excluded.schedule_id, data = excluded.data
    RETURNING 1
)
SELECT
    array(
        SELECT omniq_finish(
            $1, $2, $3::text[], $4::integer[], $5::text[], $6::integer[], $7::timestamptz[],
            $8::timestamptz[], $9::timestamptz[], $10::text[], $11::timestamptz[],
            $12::timestamptz[], $13::jsonb[]
        )
    ) AS ids,
    (SELECT count(*) FROM (SELECT pg_notify($14, $15) WHERE $14::text IS NOT NULL) AS n) AS woke,
    (SELECT count(*) FROM stored) AS stored,
    (SELECT count(pg_notify($22, ids)) FROM unnest($23::text[]) AS ids) AS results_woke;

-- name: transition
UPDATE omniq_tasks SET {assignments}
WHERE project = $1 AND id = $2 AND status = ANY ($3::text[])
RETURNING *;

-- name: notify
SELECT pg_notify($1, $2);

-- name: list_tasks
SELECT * FROM omniq_tasks WHERE project = $1 {filters} ORDER BY seq LIMIT {limit};

-- name: list_all_statuses
-- Insertion order across every status without an index of its own: one ordered scan of
-- omniq_tasks_status per status, merged (MergeAppend), stopping after the limit.
SELECT * FROM (
    (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'pending' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'waiting' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'running' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'retrying' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'success' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'failed' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'cancelled' {filters})
    UNION ALL (SELECT * FROM omniq_tasks WHERE project = $1 AND status = 'expired' {filters})
) AS every_status
ORDER BY seq
LIMIT {limit};

-- name: count_tasks
SELECT count(*) FROM omniq_tasks WHERE project = $1 {filters};

-- name: purge_tasks
DELETE FROM omniq_tasks WHERE project = $1 AND status <> 'running' {filters};

-- --- records ---------------------------------------------------------------------------------
-- ($1 project, $2 kind, $3 key.) Each write is one statement, so the comparison and the write
-- are one atomic step: a concurrent writer of the same row waits for the row lock, and the
-- WHERE clause is then evaluated again on the row it committed (READ COMMITTED), so a swap
-- from a version that is gone matches nothing. Two creators of one key meet in the primary
-- key: the second waits for the first to commit, then does nothing.

-- name: get_record
SELECT version, data FROM omniq_records WHERE project = $1 AND kind = $2 AND key = $3;

-- name: list_records
-- In primary-key order ("C" collation: the order of Python's str).
SELECT key, version, data FROM omniq_records WHERE project = $1 AND kind = $2 ORDER BY key;

-- name: put_record
INSERT INTO omniq_records (project, kind, key, version, data) VALUES ($1, $2, $3, 1, $4)
ON CONFLICT (project, kind, key)
    DO UPDATE SET version = omniq_records.version + 1, data = excluded.data
RETURNING version;

-- name: create_record
-- A swap from version 0: only if absent; no row returned when the key exists.
INSERT INTO omniq_records (project, kind, key, version, data) VALUES ($1, $2, $3, 1, $4)
ON CONFLICT (project, kind, key) DO NOTHING
RETURNING version;

-- name: swap_record
-- No row returned when the stored version is not $5 (or the record is gone).
UPDATE omniq_records SET version = version + 1, data = $4
WHERE project = $1 AND kind = $2 AND key = $3 AND version = $5
RETURNING version;

-- name: delete_record
DELETE FROM omniq_records WHERE project = $1 AND kind = $2 AND key = $3 RETURNING 1;

-- --- results ---------------------------------------------------------------------------------

-- name: put_results
-- One statement for the batch (task ids are unique within it); the waiters of each task are
-- woken when it commits ($7: the project's result channel, $8: JSON lists of task ids, each
-- under the 8000-byte payload limit).
WITH stored AS (
    INSERT INTO omniq_results (project, task_id, expires_at, finished_at, schedule_id, data)
    SELECT $1, * FROM unnest(
        $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::bytea[]
    )
    ON CONFLICT (project, task_id) DO UPDATE SET
        expires_at = excluded.expires_at, finished_at = excluded.finished_at,
        schedule_id = excluded.schedule_id, data = excluded.data
    RETURNING 1
)
SELECT (SELECT count(*) FROM stored) AS stored,
    (SELECT count(pg_notify($7, ids)) FROM unnest($8::text[]) AS ids) AS woke;

-- name: get_result
SELECT data FROM omniq_results WHERE project = $1 AND task_id = $2;

-- name: delete_result
DELETE FROM omniq_results WHERE project = $1 AND task_id = $2;

-- name: delete_expired_results
DELETE FROM omniq_results WHERE project = $1 AND expires_at IS NOT NULL AND expires_at <= $2;

-- --- events ----------------------------------------------------------------------------------

-- name: insert_events
INSERT INTO omniq_events (
    project, task_id, type, timestamp, queue_name, worker_id, attempt, duration, error,
    schedule_id
)
SELECT $1, * FROM unnest(
    $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::integer[],
    $8::float8[], $9::jsonb[], $10::text[]
);

-- name: query_events
-- {order} is "timestamp, id", led by task_id or type when that is filtered on (the same order
-- then): it names the one index that yields this order, so no plan walks the time index.
SELECT * FROM omniq_events WHERE project = $1 {filters} ORDER BY {order} LIMIT {limit};

-- name: delete_events_before
DELETE FROM omniq_events WHERE project = $1 AND timestamp < $2;
