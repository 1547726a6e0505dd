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

Notification channels (per project; names hash the project): ``omniq_tasks_<h>`` carries the
queue names of new or retried tasks (idle workers wake at once), ``omniq_results_<h>`` the ids
of written results (``get(wait=True)`` returns at once).

Modules: ``connection`` (options, shared pools, schema, errors), ``listener`` (LISTEN), ``codec``
(rows), ``sql`` (the ``.sql`` files).
"""

from __future__ import annotations

from typing import Any

import msgspec

from omniq.registry import builtin_entry

__all__ = [
    "ENTRY",
    "PostgresEventStorageConfig",
    "PostgresResultStorageConfig",
    "PostgresTaskQueueConfig",
    "options_of",
]


class _PostgresConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_name: str | None = None
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    database: str | None = None
    pool_min_size: int | None = None
    pool_max_size: int | None = None


class PostgresTaskQueueConfig(_PostgresConfig, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL task queue."""

    queues: list[str] | None = None


class PostgresResultStorageConfig(_PostgresConfig, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL result storage."""


class PostgresEventStorageConfig(_PostgresConfig, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL event storage."""


def options_of(config: _PostgresConfig) -> dict[str, object]:
    """The connection keywords of a config struct."""
    return {
        "dsn": config.dsn,
        "host": config.host,
        "port": config.port,
        "username": config.username,
        "password": config.password,
        "database": config.database,
        "pool_min_size": config.pool_min_size,
        "pool_max_size": config.pool_max_size,
    }


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
