"""Records to rows and back. Columns are always read by name.

Times are ``timestamptz`` (aware datetimes both ways); errors and dependency lists are JSON text
in ``jsonb`` columns. A task row that cannot be read (the columns are typed, but a value may be
out of range: ``'infinity'``, a negative count, JSON of the wrong shape, an unknown status)
becomes a stand-in (:mod:`omniq._corrupt`) instead of an exception, so a worker claiming it fails
it with an error naming the field and the queue goes on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from omniq._corrupt import CorruptField, check, stand_in
from omniq.models import EventType, Task, TaskError, TaskEvent, TaskStatus

__all__ = [
    "MAX_PAYLOAD",
    "channel_name",
    "error_json",
    "event_arrays",
    "event_from_row",
    "finish_arrays",
    "insert_columns",
    "json_list",
    "payload_chunks",
    "task_changes",
    "task_from_row",
]

log = logging.getLogger("omniq")

MAX_PAYLOAD = 7900  # bytes; PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
_ROW_ERRORS = (ValueError, TypeError, OverflowError, KeyError, msgspec.MsgspecError)
_TIME_FIELDS = frozenset(
    {"run_at", "expires_at", "lease_until", "started_at", "finished_at", "created_at"}
)
_MUTABLE = frozenset(
    {
        "queue_name", "priority", "status", "attempts", "max_retries", "run_at", "expires_at",
        "lease_until", "worker_id", "started_at", "finished_at", "error", "key", "func_name",
        "result_ttl", "retry_delay", "timeout", "depends_on", "schedule_id", "created_at",
        "payload",
    }
)  # fmt: skip

_json = msgspec.json.Encoder()
_error_decoder = msgspec.json.Decoder(TaskError)
_ids_decoder = msgspec.json.Decoder(tuple[str, ...])


def channel_name(kind: str, project: str) -> str:
    """The NOTIFY channel of a project's tasks or results (an identifier under 63 bytes)."""
    return f"omniq_{kind}_{hashlib.sha256(project.encode()).hexdigest()[:24]}"


def error_json(error: TaskError | None) -> str | None:
    return None if error is None else _json.encode(error).decode()


def json_list(items: Iterable[str]) -> str:
    return _json.encode(list(items)).decode()


def payload_chunks(ids: Sequence[str]) -> list[str]:
    """JSON lists of ids, each short enough for one notification."""
    chunks: list[str] = []
    start, size = 0, 2
    for i, item in enumerate(ids):
        grow = len(item.encode()) + 3
        if size + grow > MAX_PAYLOAD and i > start:
            chunks.append(json_list(ids[start:i]))
            start, size = i, 2
        size += grow
    if start < len(ids):
        chunks.append(json_list(ids[start:]))
    return chunks


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# Inserted columns and their array types: the required ones, then those sent only when some
# task of the batch has a value (an array of NULLs costs as much to encode as one of values).
_REQUIRED = (
    ("id", "text"), ("queue_name", "text"), ("priority", "integer"), ("status", "text"),
    ("attempts", "integer"), ("max_retries", "integer"), ("run_at", "timestamptz"),
    ("func_name", "text"), ("retry_delay", "float8"), ("created_at", "timestamptz"),
    ("payload", "bytea"),
)  # fmt: skip
_OPTIONAL = (
    ("expires_at", "timestamptz"), ("lease_until", "timestamptz"), ("worker_id", "text"),
    ("started_at", "timestamptz"), ("finished_at", "timestamptz"), ("error", "jsonb"),
    ("key", "text"), ("result_ttl", "float8"), ("timeout", "float8"), ("depends_on", "jsonb"),
    ("schedule_id", "text"),
)  # fmt: skip


def insert_columns(tasks: Sequence[Task]) -> tuple[tuple[tuple[str, str], ...], list[list[Any]]]:
    """The (column, type) pairs to insert and one array per column, in task order."""
    columns: list[list[Any]] = [
        [t.id for t in tasks],
        [t.queue_name for t in tasks],
        [t.priority for t in tasks],
        [t.status.value for t in tasks],
        [t.attempts for t in tasks],
        [t.max_retries for t in tasks],
        [_aware(t.run_at) for t in tasks],
        [t.func_name for t in tasks],
        [t.retry_delay for t in tasks],
        [_aware(t.created_at) for t in tasks],
        [t.payload for t in tasks],
    ]
    names = list(_REQUIRED)
    optional: tuple[list[Any], ...] = (
        [_aware(t.expires_at) for t in tasks],
        [_aware(t.lease_until) for t in tasks],
        [t.worker_id for t in tasks],
        [_aware(t.started_at) for t in tasks],
        [_aware(t.finished_at) for t in tasks],
        [error_json(t.error) for t in tasks],
        [t.key for t in tasks],
        [t.result_ttl for t in tasks],
        [t.timeout for t in tasks],
        [json_list(t.depends_on) if t.depends_on else None for t in tasks],
        [t.schedule_id for t in tasks],
    )
    for name, values in zip(_OPTIONAL, optional, strict=True):
        if any(value is not None for value in values):
            names.append(name)
            columns.append(values)
    return tuple(names), columns


def finish_arrays(tasks: Sequence[Task]) -> list[list[Any]]:
    """One array per column of ``finish``' batch, parameters $3..$13."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    (ids, attempts, statuses, priorities, run_ats, expires, leases, workers, starts, finishes,
     errors) = columns  # fmt: skip
    for task in tasks:
        ids.append(task.id)
        attempts.append(task.attempts)
        statuses.append(task.status.value)
        priorities.append(task.priority)
        run_ats.append(_aware(task.run_at))
        expires.append(_aware(task.expires_at))
        leases.append(_aware(task.lease_until))
        workers.append(task.worker_id)
        starts.append(_aware(task.started_at))
        finishes.append(_aware(task.finished_at))
        errors.append(error_json(task.error))
    return columns


def task_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a partial update given as Task field names."""
    columns = {}
    for name, value in changes.items():
        if name not in _MUTABLE:
            raise ValueError(f"cannot change task field {name!r}")
        if name in _TIME_FIELDS:
            value = _aware(value)
        elif name == "status":
            value = TaskStatus(value).value
        elif name == "error":
            value = error_json(value)
        elif name == "depends_on":
            value = json_list(value) if value else None
        columns[name] = value
    return columns


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The Task of a row; an unreadable row becomes a stand-in that fails (see above)."""
    try:
        error, depends_on = row["error"], row["depends_on"]
        return check(
            Task(
                id=row["id"],
                func_name=row["func_name"],
                payload=row["payload"],
                queue_name=row["queue_name"],
                priority=row["priority"],
                status=_read("status", TaskStatus, row["status"]),
                created_at=row["created_at"],
                run_at=row["run_at"],
                expires_at=row["expires_at"],
                result_ttl=row["result_ttl"],
                max_retries=row["max_retries"],
                retry_delay=row["retry_delay"],
                timeout=row["timeout"],
                depends_on=(
                    _read("depends_on", _ids_decoder.decode, depends_on)
                    if depends_on is not None
                    else ()
                ),
                key=row["key"],
                schedule_id=row["schedule_id"],
                attempts=row["attempts"],
                worker_id=row["worker_id"],
                lease_until=row["lease_until"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                error=_read("error", _error_decoder.decode, error) if error is not None else None,
            )
        )
    except _ROW_ERRORS as exc:
        return _salvage(row, exc)


def _read(name: str, convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except _ROW_ERRORS as exc:
        raise CorruptField(name, value) from exc


def _salvage(row: Mapping[str, Any], exc: Exception) -> Task:
    # The columns are typed: only values (not types) can be wrong, and those are left out.
    status = row["status"]
    run_at = row["run_at"]
    return stand_in(
        row["id"],
        exc,
        func_name=row["func_name"],
        queue_name=row["queue_name"],
        priority=row["priority"],
        status=TaskStatus(status) if status in TaskStatus._value2member_map_ else TaskStatus.FAILED,
        created_at=row["created_at"],
        **({"run_at": run_at} if 1 < run_at.year < 9999 else {}),
        key=row["key"],
        attempts=row["attempts"],
        worker_id=row["worker_id"],
        lease_until=row["lease_until"],
        started_at=row["started_at"],
    )


def event_arrays(events: Sequence[TaskEvent]) -> list[list[Any]]:
    """One array per column of ``insert_events``, parameters $2..$10."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    task_ids, types, stamps, queues, workers, attempts, durations, errors, schedules = columns
    for event in events:
        task_ids.append(event.task_id)
        types.append(event.type.value)
        stamps.append(_aware(event.timestamp))
        queues.append(event.queue_name)
        workers.append(event.worker_id)
        attempts.append(event.attempt)
        durations.append(event.duration)
        errors.append(error_json(event.error))
        schedules.append(event.schedule_id)
    return columns


def event_from_row(row: Mapping[str, Any]) -> TaskEvent:
    error = row["error"]
    return TaskEvent(
        task_id=row["task_id"],
        type=EventType(row["type"]),
        timestamp=row["timestamp"],
        queue_name=row["queue_name"],
        worker_id=row["worker_id"],
        attempt=row["attempt"],
        duration=row["duration"],
        error=_error_decoder.decode(error) if error is not None else None,
        schedule_id=row["schedule_id"],
    )
