-- OmniQ's PostgreSQL schema and its migrations. Read by omniq.backends.postgres.sql: "-- name: X"
-- starts section X. Migration N (section migration_N) takes the schema from version N-1 to N;
-- they run in order, each once per database, inside one transaction holding an advisory lock
-- (omniq.backends.postgres.connection.ensure_schema). Never edit a released migration: add one.
--
-- One database may hold the tasks, results and events of several projects: every row carries
-- its `project` and every query filters on it (the leading column of every index).
--
--   omniq_meta     name -> value; 'schema_version' says which migrations ran.
--   omniq_tasks    one row per task. `seq` is the insertion order (FIFO among equal priorities);
--                  `error` is a TaskError as JSON, `depends_on` a JSON array of task ids.
--   omniq_results  one row per (project, task_id): `data` is the encoded TaskResult; expiry,
--                  schedule and finish time are copied out for clean-up and lookups.
--   omniq_events   append-only life-cycle events as plain columns (never pickles); `id` is the
--                  write order, used to break timestamp ties.
--   omniq_finish(), omniq_renew()  the compare-and-set writes of a worker, row by row (below);
--                  omniq_mark_started() (version 3) the same for a start of a task claimed ahead.
--   omniq_records  (version 2) small versioned documents (schedules, worker heartbeats) by
--                  (kind, key); `version` makes compare-and-set updates possible.

-- name: meta_table
CREATE TABLE IF NOT EXISTS omniq_meta (name text PRIMARY KEY, value text NOT NULL);

-- name: meta_exists
SELECT to_regclass('omniq_meta') IS NOT NULL;

-- name: schema_version
SELECT value FROM omniq_meta WHERE name = 'schema_version';

-- name: set_schema_version
INSERT INTO omniq_meta (name, value) VALUES ('schema_version', $1)
ON CONFLICT (name) DO UPDATE SET value = excluded.value;

-- name: migration_1
CREATE TABLE omniq_tasks (
    project      text        NOT NULL,
    id           text        NOT NULL,
    seq          bigint      GENERATED ALWAYS AS IDENTITY,
    queue_name   text        NOT NULL,
    priority     integer     NOT NULL,
    status       text        NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    max_retries  integer     NOT NULL,
    run_at       timestamptz NOT NULL,
    expires_at   timestamptz,
    lease_until  timestamptz,
    worker_id    text,
    started_at   timestamptz,
    finished_at  timestamptz,
    error        jsonb,
    key          text,
    func_name    text        NOT NULL,
    result_ttl   double precision,
    retry_delay  double precision NOT NULL,
    timeout      double precision,
    depends_on   jsonb,
    schedule_id  text,
    created_at   timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (project, id)
) WITH (fillfactor = 90);

-- Claim from one named queue: an ordered index scan that stops after the tasks it needs; run_at
-- is a key column so that delayed tasks are skipped on the index, without visiting their rows.
CREATE INDEX omniq_tasks_ready_by_queue
    ON omniq_tasks (project, queue_name, priority DESC, seq, run_at)
    WHERE status IN ('pending', 'retrying');

-- Claim from any queue (no queue list): the same order without the queue.
CREATE INDEX omniq_tasks_ready
    ON omniq_tasks (project, priority DESC, seq, run_at)
    WHERE status IN ('pending', 'retrying');

-- When the next delayed task comes due (idle workers sleep until then).
CREATE INDEX omniq_tasks_due
    ON omniq_tasks (project, run_at)
    WHERE status IN ('pending', 'retrying');

-- Running tasks (few): lapsed leases of lost workers, and when the next lease lapses.
CREATE INDEX omniq_tasks_running
    ON omniq_tasks (project, lease_until)
    WHERE status = 'running';

-- Idempotency keys: at most one live (not final) task per key.
CREATE UNIQUE INDEX omniq_tasks_live_key
    ON omniq_tasks (project, key)
    WHERE key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired');

-- Listing (in insertion order) and counting by status. Running tasks are left out, so that a
-- claim adds no entry here (they are few, and omniq_tasks_running finds them).
CREATE INDEX omniq_tasks_status ON omniq_tasks (project, status, seq) WHERE status <> 'running';

CREATE TABLE omniq_results (
    project      text        NOT NULL,
    task_id      text        NOT NULL,
    expires_at   timestamptz,
    finished_at  timestamptz,
    schedule_id  text,
    data         bytea       NOT NULL,
    PRIMARY KEY (project, task_id)
);

CREATE INDEX omniq_results_expiry
    ON omniq_results (project, expires_at)
    WHERE expires_at IS NOT NULL;

CREATE INDEX omniq_results_schedule
    ON omniq_results (project, schedule_id, finished_at)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE omniq_events (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project      text        NOT NULL,
    task_id      text        NOT NULL,
    type         text        NOT NULL,
    timestamp    timestamptz NOT NULL,
    queue_name   text,
    worker_id    text,
    attempt      integer,
    duration     double precision,
    error        jsonb,
    schedule_id  text
);

-- The queries of get_events: by task, by type over time, by time.
CREATE INDEX omniq_events_task ON omniq_events (project, task_id, timestamp, id);
CREATE INDEX omniq_events_type ON omniq_events (project, type, timestamp, id);
CREATE INDEX omniq_events_time ON omniq_events (project, timestamp, id);

-- A worker's compare-and-set writes: a row is written only while it is still running under
-- that worker (and, for finish, at that attempt). Two statements, each with its own snapshot:
-- the first finds and locks the rows, in the order given (sorted by id by the caller, so
-- finish and renew never deadlock), one primary-key lookup each (a lateral subquery with LIMIT
-- runs as a nested loop over the list; the conditions are written with IS NOT DISTINCT FROM so
-- that no partial index can serve them), rechecking the conditions on the newest row version;
-- the second updates the locked rows by their physical address. So the plan is the same
-- whatever the statistics say (a one-statement UPDATE ... FROM unnest(...) was seen to scan
-- every task of the project when planned over a young table), and a concurrent change (a
-- cancel, a lost lease) is never overwritten.
CREATE FUNCTION omniq_finish(
    p_project text, p_worker text, p_ids text[], p_attempts integer[], p_statuses text[],
    p_priorities integer[], p_run_at timestamptz[], p_expires_at timestamptz[],
    p_lease_until timestamptz[], p_worker_ids text[], p_started_at timestamptz[],
    p_finished_at timestamptz[], p_errors jsonb[]
) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    locked tid[];
    written text;
BEGIN
    locked := array(
        SELECT r.row_id FROM unnest(p_ids, p_attempts) AS i (id, attempts)
        LEFT JOIN LATERAL (
            SELECT ctid AS row_id FROM omniq_tasks
            WHERE project = p_project AND id = i.id
                AND (status, worker_id, attempts)
                    IS NOT DISTINCT FROM ('running'::text, p_worker, i.attempts)
            LIMIT 1
            FOR UPDATE
        ) AS r ON true
    );
    FOR written IN
        UPDATE omniq_tasks AS t
        SET status = b.status, priority = b.priority, run_at = b.run_at,
            expires_at = b.expires_at, lease_until = b.lease_until, worker_id = b.worker_id,
            started_at = b.started_at, finished_at = b.finished_at, error = b.error
        FROM unnest(
            locked, p_statuses, p_priorities, p_run_at, p_expires_at, p_lease_until,
            p_worker_ids, p_started_at, p_finished_at, p_errors
        ) AS b (
            row_id, status, priority, run_at, expires_at, lease_until, worker_id, started_at,
            finished_at, error
        )
        WHERE t.ctid = b.row_id
        RETURNING t.id
    LOOP
        RETURN NEXT written;
    END LOOP;
END
$$;

CREATE FUNCTION omniq_renew(
    p_project text, p_worker text, p_ids text[], p_lease_until timestamptz
) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    locked tid[];
    written text;
BEGIN
    -- A renewal lost to a server crash only shortens a lease: do not wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    locked := array(
        SELECT r.row_id FROM unnest(p_ids) AS i (id)
        CROSS JOIN LATERAL (
            SELECT ctid AS row_id FROM omniq_tasks
            WHERE project = p_project AND id = i.id
                AND (status, worker_id) IS NOT DISTINCT FROM ('running'::text, p_worker)
            LIMIT 1
            FOR UPDATE
        ) AS r
    );
    FOR written IN
        UPDATE omniq_tasks AS t SET lease_until = p_lease_until
        FROM unnest(locked) AS b (row_id)
        WHERE t.ctid = b.row_id
        RETURNING t.id
    LOOP
        RETURN NEXT written;
    END LOOP;
END
$$;

-- name: migration_2
-- Records: small versioned documents beside the tasks (schedules, worker heartbeats). A write
-- is one statement that compares and bumps `version` (queries.sql), so of several processes
-- swapping the same version exactly one wins. kind and key use the "C" collation: the primary
-- key's order is then byte order, the order of Python's str (list_records reads it as is).
-- Heartbeats rewrite their row every few seconds: the spare room per page keeps those updates
-- HOT (no index entry added; `data` and `version` are not indexed).
CREATE TABLE omniq_records (
    project  text   NOT NULL,
    kind     text   COLLATE "C" NOT NULL,
    key      text   COLLATE "C" NOT NULL,
    version  bigint NOT NULL,
    data     bytea  NOT NULL,
    PRIMARY KEY (project, kind, key)
) WITH (fillfactor = 70);

-- name: migration_3
-- The start marks of tasks claimed ahead, written the way omniq_finish and omniq_renew write:
-- two statements, each with its own snapshot. A one-statement mark (lock by a lateral lookup,
-- then update by address) lost its write whenever the worker's renew loop renewed the row
-- while the mark waited for its lock: the lock returned the renewed version's address, which
-- the statement's snapshot could not see, so nothing was written, the task's outcome was then
-- refused for its attempt count, and the task ran again once its lease lapsed. Here the update
-- takes a new snapshot, which sees the version locked. Written where the claim ahead is
-- current: RUNNING under p_worker, not started, one attempt fewer than p_attempts. A lost
-- mark (a server crash) only leaves the attempt's outcome unwritten, so the task runs again:
-- the commit does not wait for its WAL flush.
CREATE FUNCTION omniq_mark_started(
    p_project text, p_worker text, p_ids text[], p_attempts integer[],
    p_started_at timestamptz[]
) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    locked tid[];
    written text;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    locked := array(
        SELECT r.row_id FROM unnest(p_ids, p_attempts) AS i (id, attempts)
        LEFT JOIN LATERAL (
            SELECT ctid AS row_id FROM omniq_tasks
            WHERE project = p_project AND id = i.id
                AND (status, worker_id, attempts, started_at) IS NOT DISTINCT FROM
                    ('running'::text, p_worker, i.attempts - 1, NULL::timestamptz)
            LIMIT 1
            FOR UPDATE
        ) AS r ON true
    );
    FOR written IN
        UPDATE omniq_tasks AS t SET attempts = b.attempts, started_at = b.started_at
        FROM unnest(locked, p_attempts, p_started_at) AS b (row_id, attempts, started_at)
        WHERE t.ctid = b.row_id
        RETURNING t.id
    LOOP
        RETURN NEXT written;
    END LOOP;
END
$$;
