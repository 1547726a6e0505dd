"""Rows to records and back: epoch seconds for datetimes, JSON for errors and id lists.

Columns are always read by name. SQLite columns take a value of any type: a task row that cannot
be read (a bad enum value, garbage JSON, text where a number belongs) becomes a stand-in
(:mod:`omniq._corrupt`) instead of an exception, so that a worker claiming it fails it with an
error naming the field and the queue keeps going.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from itertools import compress
from typing import Any

import msgspec

from omniq._corrupt import CorruptField, check, stand_in
from omniq.models import EventType, Task, TaskError, TaskEvent, TaskStatus, utcnow

__all__ = [
    "ROW_ERRORS",
    "TASK_COLUMNS",
    "error_json",
    "event_from_row",
    "event_params",
    "from_epoch",
    "insert_rows",
    "task_changes",
    "task_from_row",
    "to_epoch",
]

log = logging.getLogger("omniq")

# Columns an insert always writes, then those it writes only when not NULL (binding None is slow
# in Python 3.11's sqlite3: an adapter lookup that raises internally, ~0.3 us per value).
_REQUIRED = (
    "project", "id", "queue_name", "priority", "status", "run_at", "attempts", "func_name",
    "max_retries", "retry_delay", "created_at", "payload",
)  # fmt: skip
_OPTIONAL = (
    "expires_at", "lease_until", "worker_id", "started_at", "finished_at", "error", "key",
    "result_ttl", "timeout", "depends_on", "schedule_id",
)  # fmt: skip
TASK_COLUMNS = _REQUIRED + _OPTIONAL
Params = tuple[Any, ...]
_TIME_FIELDS = frozenset(
    {"run_at", "expires_at", "lease_until", "started_at", "finished_at", "created_at"}
)
_MUTABLE = frozenset(TASK_COLUMNS) - {"project", "id"}
ROW_ERRORS = (ValueError, TypeError, OverflowError, OSError, KeyError, msgspec.MsgspecError)

_error_decoder = msgspec.json.Decoder(TaskError)
_ids_decoder = msgspec.json.Decoder(tuple[str, ...])
_json = msgspec.json.Encoder()


def to_epoch(value: datetime | None) -> float | None:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def error_json(error: TaskError | None) -> str | None:
    return None if error is None else _json.encode(error).decode()


def insert_rows(project: str, tasks: list[Task]) -> list[tuple[tuple[str, ...], list[Params]]]:
    """Insert parameters as runs of consecutive tasks that set the same columns (NULLs left out).

    Each run is (columns, rows); inserting the runs in order keeps the tasks' order.
    """
    runs: list[tuple[tuple[str, ...], list[Params]]] = []
    last: list[bool] | None = None
    for task in tasks:
        optional = (
            to_epoch(task.expires_at), to_epoch(task.lease_until), task.worker_id,
            to_epoch(task.started_at), to_epoch(task.finished_at), error_json(task.error),
            task.key, task.result_ttl, task.timeout,
            _json.encode(task.depends_on).decode() if task.depends_on else None, task.schedule_id,
        )  # fmt: skip
        present = [value is not None for value in optional]
        if present != last:
            runs.append((_REQUIRED + tuple(compress(_OPTIONAL, present)), []))
            last = present
        row = (
            project, task.id, task.queue_name, task.priority, task.status.value,
            task.run_at.timestamp(), task.attempts, task.func_name, task.max_retries,
            task.retry_delay, task.created_at.timestamp(), task.payload,
            *compress(optional, present),
        )  # fmt: skip
        runs[-1][1].append(row)
    return runs


def task_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Column values for a partial update given as Task field names."""
    columns = {}
    for name, value in changes.items():
        if name not in _MUTABLE:
            raise ValueError(f"cannot change task field {name!r}")
        if name in _TIME_FIELDS:
            value = to_epoch(value)
        elif name == "status":
            value = TaskStatus(value).value
        elif name == "error":
            value = error_json(value)
        elif name == "depends_on":
            value = _json.encode(tuple(value)).decode() if value else None
        columns[name] = value
    return columns


def task_from_row(row: sqlite3.Row) -> Task:
    """The Task of a row; an unreadable row becomes a stand-in that fails (see above)."""
    try:
        payload = row["payload"]
        if not isinstance(payload, bytes):
            raise CorruptField("payload", payload)
        error, depends_on = row["error"], row["depends_on"]
        return check(
            Task(
                id=row["id"],
                func_name=row["func_name"],
                payload=payload,
                queue_name=row["queue_name"],
                priority=row["priority"],
                status=_read("status", TaskStatus, row["status"]),
                created_at=_read("created_at", _epoch, row["created_at"]),
                run_at=_read("run_at", _epoch, row["run_at"]),
                expires_at=_read("expires_at", from_epoch, row["expires_at"]),
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
                lease_until=_read("lease_until", from_epoch, row["lease_until"]),
                started_at=_read("started_at", from_epoch, row["started_at"]),
                finished_at=_read("finished_at", from_epoch, row["finished_at"]),
                error=_read("error", _error_decoder.decode, error) if error is not None else None,
            )
        )
    except ROW_ERRORS as exc:
        return _salvage(row, exc)


def _epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _read(name: str, convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except ROW_ERRORS as exc:
        raise CorruptField(name, value) from exc


def _salvage(row: sqlite3.Row, exc: Exception) -> Task:
    def field(read: Any, default: Any) -> Any:
        try:
            value = read()
        except ROW_ERRORS:
            return default
        wanted = datetime if default is None else type(default)
        return value if type(value) is wanted else default

    now = utcnow()
    return stand_in(
        str(row["id"]),
        exc,
        func_name=field(lambda: row["func_name"], "?"),
        queue_name=field(lambda: row["queue_name"], "default"),
        priority=field(lambda: row["priority"], 0),
        status=field(lambda: TaskStatus(row["status"]), TaskStatus.FAILED),
        created_at=field(lambda: _epoch(row["created_at"]), now),
        run_at=field(lambda: _epoch(row["run_at"]), None),
        key=row["key"] if isinstance(row["key"], str) else None,
        attempts=field(lambda: row["attempts"], 0),
        worker_id=row["worker_id"] if isinstance(row["worker_id"], str) else None,
        lease_until=field(lambda: _epoch(row["lease_until"]), None),
        started_at=field(lambda: _epoch(row["started_at"]), None),
    )


def event_params(project: str, event: TaskEvent) -> dict[str, Any]:
    return {
        "project": project,
        "task_id": event.task_id,
        "type": event.type.value,
        "timestamp": to_epoch(event.timestamp),
        "queue_name": event.queue_name,
        "worker_id": event.worker_id,
        "attempt": event.attempt,
        "duration": event.duration,
        "error": error_json(event.error),
        "schedule_id": event.schedule_id,
    }


def event_from_row(row: sqlite3.Row) -> TaskEvent:
    error = row["error"]
    return TaskEvent(
        task_id=row["task_id"],
        type=EventType(row["type"]),
        timestamp=datetime.fromtimestamp(row["timestamp"], UTC),
        queue_name=row["queue_name"],
        worker_id=row["worker_id"],
        attempt=row["attempt"],
        duration=row["duration"],
        error=_error_decoder.decode(error) if error is not None else None,
        schedule_id=row["schedule_id"],
    )
