-- OmniQ's SQLite schema (version 2). Read by omniq.backends.sqlite.sql: "-- name: X" starts section X.
--
-- One file may hold the tasks, results and events of several projects: every row carries its
-- `project` and every query filters on it. Times are REAL seconds since the Unix epoch (UTC).
--
--   omniq_meta     name -> value; 'schema_version' says which migrations ran.
--   omniq_tasks    one row per task. `seq` (the rowid) is the insertion order: FIFO among equal
--                  priorities. Mutable columns first, then the immutable rest. `error` is a
--                  TaskError as JSON, `depends_on` a JSON array of task ids (NULL when none).
--   omniq_results  one row per (project, task_id): `data` is the encoded TaskResult; expiry,
--                  schedule and finish time are copied out for cleanup and lookups.
--   omniq_records  small versioned documents (schedules, worker heartbeats) by (kind, key);
--                  `version` makes compare-and-set updates possible.
--   omniq_events   append-only life-cycle events as plain columns (never pickles); `id` is the
--                  write order, used to break timestamp ties.

-- name: meta_table
CREATE TABLE IF NOT EXISTS omniq_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);

-- name: meta_exists
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'omniq_meta';

-- name: schema_version
SELECT value FROM omniq_meta WHERE name = 'schema_version';

-- name: set_schema_version
INSERT INTO omniq_meta (name, value) VALUES ('schema_version', ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value;

-- name: schema
CREATE TABLE IF NOT EXISTS omniq_tasks (
    seq          INTEGER PRIMARY KEY,
    project      TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    queue_name   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    run_at       REAL    NOT NULL,
    expires_at   REAL,
    lease_until  REAL,
    worker_id    TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    started_at   REAL,
    finished_at  REAL,
    error        TEXT,
    key          TEXT,
    func_name    TEXT    NOT NULL,
    result_ttl   REAL,
    max_retries  INTEGER NOT NULL,
    retry_delay  REAL    NOT NULL,
    timeout      REAL,
    depends_on   TEXT,
    schedule_id  TEXT,
    created_at   REAL    NOT NULL,
    payload      BLOB    NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS omniq_tasks_id ON omniq_tasks (project, id);

-- Claim, one named queue at a time: an ordered index scan, with run_at in the index so that
-- delayed tasks are skipped without reading their rows.
CREATE INDEX IF NOT EXISTS omniq_tasks_ready_by_queue
    ON omniq_tasks (project, queue_name, priority DESC, seq, run_at)
    WHERE status IN ('pending', 'retrying');

-- Claim across all queues (no queue list): the same order without the queue.
CREATE INDEX IF NOT EXISTS omniq_tasks_ready
    ON omniq_tasks (project, priority DESC, seq, run_at)
    WHERE status IN ('pending', 'retrying');

-- Lapsed leases of lost workers.
CREATE INDEX IF NOT EXISTS omniq_tasks_due
    ON omniq_tasks (project, run_at)
    WHERE status IN ('pending', 'retrying');

CREATE INDEX IF NOT EXISTS omniq_tasks_leases
    ON omniq_tasks (project, lease_until)
    WHERE status = 'running';

-- Idempotency keys: at most one live (not final) task per key.
CREATE UNIQUE INDEX IF NOT EXISTS omniq_tasks_live_key
    ON omniq_tasks (project, key)
    WHERE key IS NOT NULL AND status NOT IN ('success', 'failed', 'cancelled', 'expired');

-- Listing and counting by status and queue (rows of one status+queue come in seq order).
CREATE INDEX IF NOT EXISTS omniq_tasks_status
    ON omniq_tasks (project, status, queue_name);

CREATE TABLE IF NOT EXISTS omniq_results (
    project      TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    data         BLOB NOT NULL,
    expires_at   REAL,
    schedule_id  TEXT,
    finished_at  REAL,
    PRIMARY KEY (project, task_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS omniq_results_expiry
    ON omniq_results (project, expires_at)
    WHERE expires_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS omniq_results_schedule
    ON omniq_results (project, schedule_id, finished_at)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS omniq_events (
    id           INTEGER PRIMARY KEY,
    project      TEXT    NOT NULL,
    task_id      TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    timestamp    REAL    NOT NULL,
    queue_name   TEXT,
    worker_id    TEXT,
    attempt      INTEGER,
    duration     REAL,
    error        TEXT,
    schedule_id  TEXT
);

CREATE INDEX IF NOT EXISTS omniq_events_task ON omniq_events (project, task_id, timestamp);
CREATE INDEX IF NOT EXISTS omniq_events_type ON omniq_events (project, type, timestamp);
CREATE INDEX IF NOT EXISTS omniq_events_time ON omniq_events (project, timestamp);

-- Added in version 2.
CREATE TABLE IF NOT EXISTS omniq_records (
    project  TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (project, kind, key)
) WITHOUT ROWID;
