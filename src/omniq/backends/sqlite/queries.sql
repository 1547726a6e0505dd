-- OmniQ's SQLite statements, one "-- name: X" section each (read by omniq.backends.sqlite.sql).
-- Named parameters (:project, ...), except where noted. Python fills only the {braces}, and only
-- from fixed lists of column names and filter clauses, never from values.

-- --- tasks -----------------------------------------------------------------------------------

-- name: insert_task
-- Positional parameters, columns as listed by omniq.backends.sqlite.codec.insert_rows (NULL columns are
-- left out: binding by position and not binding None make bulk inserts twice as fast). A live
-- task with the same key wins: this row is skipped.
INSERT INTO omniq_tasks ({columns}) VALUES ({placeholders})
ON CONFLICT (project, key)
    WHERE key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired')
DO NOTHING;

-- name: live_keys
SELECT key, id FROM omniq_tasks
WHERE project = :project AND key IN (SELECT value FROM json_each(:keys))
    AND key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired');

-- name: get_task
SELECT * FROM omniq_tasks WHERE project = :project AND id = :id;

-- name: ready_in_queue
-- The status term repeats the partial index's condition so the index applies; run_at is in
-- the index, so delayed tasks are skipped without reading their rows. A run_at that is not a
-- number (corrupt: text or blob, which SQLite sorts after every number, so >= '') counts as due:
-- the claim hands the task out to fail rather than leave it pending forever.
SELECT seq, queue_name, priority FROM omniq_tasks INDEXED BY omniq_tasks_ready_by_queue
WHERE project = :project AND queue_name = :queue_name
    AND status IN ('pending', 'retrying') AND (run_at <= :now OR run_at >= '')
ORDER BY priority DESC, seq
LIMIT :limit;

-- name: ready_in_any_queue
SELECT seq, queue_name, priority FROM omniq_tasks INDEXED BY omniq_tasks_ready
WHERE project = :project AND status IN ('pending', 'retrying')
    AND (run_at <= :now OR run_at >= '')
ORDER BY priority DESC, seq
LIMIT :limit;

-- name: lapsed_leases
SELECT seq, queue_name, priority FROM omniq_tasks INDEXED BY omniq_tasks_leases
WHERE project = :project AND status = 'running' AND lease_until < :now;

-- name: next_due
-- When an idle worker should look again even if nothing is written: the next delayed task
-- becoming due, or the next lease lapsing.
-- (The aggregate min skips NULLs; the two-argument scalar min would return NULL.)
SELECT min(at) AS next_at FROM (
    SELECT min(run_at) AS at FROM omniq_tasks INDEXED BY omniq_tasks_due
    WHERE project = :project AND status IN ('pending', 'retrying') AND run_at < ''
    UNION ALL
    SELECT min(lease_until) FROM omniq_tasks INDEXED BY omniq_tasks_leases
    WHERE project = :project AND status = 'running'
);

-- name: take
-- Unary + keeps the planner on rowid lookups: without statistics it would rather scan an index
-- on project than trust a short json_each list. :counted holds the seqs that start now; the
-- others are claimed ahead and count no attempt, except one taken back from a lapsed lease
-- (status 'running': SET expressions read the row as it was before this update).
UPDATE omniq_tasks
SET status = 'running', worker_id = :worker_id, lease_until = :lease_until,
    attempts = attempts + (status = 'running' OR seq IN (SELECT value FROM json_each(:counted))),
    started_at = CASE
        WHEN status = 'running' OR seq IN (SELECT value FROM json_each(:counted)) THEN :now
    END
WHERE seq IN (SELECT value FROM json_each(:seqs)) AND +project = :project
RETURNING *;

-- name: mark_started
-- Tasks claimed ahead that started: :batch is a JSON array of [id, attempts, started_at]
-- arrays (the new attempts), written where the claim ahead is still current (no start time,
-- one attempt fewer).
WITH b AS MATERIALIZED (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempts,
        json_extract(value, '$[2]') AS started_at
    FROM json_each(:batch)
)
UPDATE omniq_tasks SET attempts = b.attempts, started_at = b.started_at
FROM b
WHERE omniq_tasks.project = :project AND omniq_tasks.id = b.id
    AND +omniq_tasks.status = 'running' AND omniq_tasks.worker_id = :worker_id
    AND omniq_tasks.started_at IS NULL AND omniq_tasks.attempts = b.attempts - 1
RETURNING omniq_tasks.id;

-- name: renew
UPDATE omniq_tasks SET lease_until = :lease_until
WHERE project = :project AND id IN (SELECT value FROM json_each(:ids))
    AND +status = 'running' AND worker_id = :worker_id
RETURNING id;

-- name: finish
-- Compare-and-set for a whole batch in one statement: only claims that are still current may
-- write their outcome. :batch is a JSON array of [id, attempts, status, priority, run_at,
-- expires_at, lease_until, worker_id, started_at, finished_at, error] arrays. MATERIALIZED
-- makes the batch the outer loop: one (project, id) index lookup per element.
WITH b AS MATERIALIZED (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempts,
        json_extract(value, '$[2]') AS status, json_extract(value, '$[3]') AS priority,
        json_extract(value, '$[4]') AS run_at, json_extract(value, '$[5]') AS expires_at,
        json_extract(value, '$[6]') AS lease_until, json_extract(value, '$[7]') AS worker_id,
        json_extract(value, '$[8]') AS started_at, json_extract(value, '$[9]') AS finished_at,
        json_extract(value, '$[10]') AS error
    FROM json_each(:batch)
)
UPDATE omniq_tasks
SET status = b.status, priority = b.priority, run_at = b.run_at, expires_at = b.expires_at,
    lease_until = b.lease_until, worker_id = b.worker_id, started_at = b.started_at,
    finished_at = b.finished_at, error = b.error
FROM b
WHERE omniq_tasks.project = :project AND omniq_tasks.id = b.id
    AND +omniq_tasks.status = 'running' AND omniq_tasks.worker_id = :worker_id
    AND omniq_tasks.attempts = b.attempts
RETURNING omniq_tasks.id;

-- name: transition
UPDATE omniq_tasks SET {assignments}
WHERE project = :project AND id = :id AND status IN (SELECT value FROM json_each(:from_statuses))
RETURNING *;

-- name: list_tasks
-- Pick the rows on an index alone, then read only those (a sort of many full rows otherwise).
SELECT * FROM omniq_tasks
WHERE seq IN (
    SELECT seq FROM omniq_tasks WHERE project = :project {filters} ORDER BY seq LIMIT :limit
)
ORDER BY seq;

-- name: count_tasks
SELECT count(*) AS n FROM omniq_tasks WHERE project = :project {filters};

-- name: purge_tasks
DELETE FROM omniq_tasks WHERE project = :project AND status != 'running' {filters};

-- --- records ---------------------------------------------------------------------------------

-- name: get_record
SELECT version, data FROM omniq_records WHERE project = :project AND kind = :kind AND key = :key;

-- name: list_records
SELECT key, version, data FROM omniq_records WHERE project = :project AND kind = :kind ORDER BY key;

-- name: put_record
INSERT INTO omniq_records (project, kind, key, version, data)
VALUES (:project, :kind, :key, 1, :data)
ON CONFLICT (project, kind, key) DO UPDATE SET version = version + 1, data = excluded.data
RETURNING version;

-- name: create_record
INSERT INTO omniq_records (project, kind, key, version, data)
VALUES (:project, :kind, :key, 1, :data)
ON CONFLICT (project, kind, key) DO NOTHING
RETURNING version;

-- name: swap_record
UPDATE omniq_records SET version = version + 1, data = :data
WHERE project = :project AND kind = :kind AND key = :key AND version = :version
RETURNING version;

-- name: delete_record
DELETE FROM omniq_records WHERE project = :project AND kind = :kind AND key = :key;

-- --- results ---------------------------------------------------------------------------------

-- name: put_result
INSERT INTO omniq_results (project, task_id, data, expires_at, schedule_id, finished_at)
VALUES (:project, :task_id, :data, :expires_at, :schedule_id, :finished_at)
ON CONFLICT (project, task_id) DO UPDATE SET
    data = excluded.data, expires_at = excluded.expires_at,
    schedule_id = excluded.schedule_id, finished_at = excluded.finished_at;

-- name: get_result
SELECT data FROM omniq_results WHERE project = :project AND task_id = :task_id;

-- name: results_present
-- Which of the awaited task ids (:ids, a JSON array) have a result: the cross-process watch
-- wakes only their waiters.
SELECT task_id FROM omniq_results
WHERE project = :project AND task_id IN (SELECT value FROM json_each(:ids));

-- name: delete_result
DELETE FROM omniq_results WHERE project = :project AND task_id = :task_id;

-- name: delete_expired_results
DELETE FROM omniq_results
WHERE project = :project AND expires_at IS NOT NULL AND expires_at <= :now;

-- --- events ----------------------------------------------------------------------------------

-- name: insert_event
INSERT INTO omniq_events
    (project, task_id, type, timestamp, queue_name, worker_id, attempt, duration, error, schedule_id)
VALUES
    (:project, :task_id, :type, :timestamp, :queue_name, :worker_id, :attempt, :duration, :error,
     :schedule_id);

-- name: query_events
SELECT * FROM omniq_events WHERE project = :project {filters} ORDER BY timestamp, id LIMIT :limit;

-- name: delete_events_before
DELETE FROM omniq_events WHERE project = :project AND timestamp < :before;
