"""What the PostgreSQL task queue, result storage and event storage share.

Tables (created and migrated by the library: ``schema.sql``, applied under an advisory lock):

    omniq_meta     name -> value ('schema_version')
    omniq_tasks    PK (project, id); seq = insertion order; status text; times timestamptz;
                   error and depends_on jsonb; payload bytea. Partial indexes hold only the
                   rows each hot query needs: ready rows by queue and over all queues (claims),
                   ready rows by run_at (next due), running rows by lease (lost workers), live
                   idempotency keys (unique); plus (project, status, seq) for lists and counts.
    omniq_results  PK (project, task_id); the encoded TaskResult in ``data``; expiry index.
    omniq_events   one row per event, plain columns; indexed by task, by type+time, by time.
    omniq_records  PK (project, kind, key) in the "C" collation (key order = str order);
                   version bigint for compare-and-set; data bytea (schema version 2).
    functions      omniq_finish, omniq_renew, omniq_mark_started (schema version 3): a
                   worker's compare-and-set writes.

Notification channels (per project; names hash the project): ``omniq_tasks_<h>`` carries the
queue names of new or retried tasks (idle workers wake at once), ``omniq_results_<h>`` the ids
of written results (``get(wait=True)`` returns at once).

Modules: ``connection`` (options, shared pools, schema, errors), ``listener`` (LISTEN), ``codec``
(rows), ``sql`` (the ``.sql`` files).
"""

from __future__ import annotations

from typing import Any

from omniq.registry import builtin_entry

__all__ = ["ENTRY"]


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    return "postgres", {"dsn": url}


ENTRY = builtin_entry(
    "postgres",
    "Postgres",
    events=True,
    extra="postgres",
    schemes=("postgresql", "postgres"),
    aliases=("postgresql",),
    url_options=_url_options,
)
