"""Tasks to Redis hash fields and back (field names in :mod:`.keys`).

Times travel as ``repr(float)`` epoch seconds, integers as decimal strings, the error as JSON
text, and the immutable rest of a task as one msgpack blob (:class:`Fixed`). Scripts return task
fields in msgpack (text only: Redis' Lua msgpack cannot carry binary) beside the blobs as plain
bulk strings. A task that cannot be read becomes a stand-in (:mod:`omniq._corrupt`) whose error
names the field, so that a worker claiming it fails it and the queue goes on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from omniq._corrupt import CorruptField, check, named, stand_in
from omniq.models import Task, TaskError, TaskStatus

__all__ = [
    "Fixed",
    "change_fields",
    "decode_rows",
    "finish_rows",
    "insert_rows",
    "task_from_fields",
]

log = logging.getLogger("omniq")


class Fixed(msgspec.Struct, array_like=True, frozen=True):
    """The fields of a task that never change after enqueue (hash field ``d``)."""

    func_name: str
    payload: bytes
    created_at: float
    result_ttl: float | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    timeout: float | None = None
    depends_on: tuple[str, ...] = ()
    schedule_id: str | None = None


_fixed_encoder = msgspec.msgpack.Encoder()
_fixed_decoder = msgspec.msgpack.Decoder(Fixed)
_rows_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(list[list[str | int | bool | None]])
_error_decoder = msgspec.json.Decoder(TaskError)
_json = msgspec.json.Encoder()
_ERRORS = (ValueError, TypeError, OverflowError, OSError, KeyError, msgspec.MsgspecError)
_MUTABLE = {
    "status": "s",
    "priority": "p",
    "run_at": "r",
    "expires_at": "e",
    "lease_until": "l",
    "worker_id": "w",
    "attempts": "a",
    "started_at": "b",
    "finished_at": "f",
    "error": "x",
}


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return repr(value.timestamp())


def _error(error: TaskError | None) -> str:
    return "" if error is None else _json.encode(error).decode()


def insert_rows(tasks: list[Task]) -> tuple[bytes, bytes]:
    """The insert script's rows (msgpack) and the tasks' fixed blobs, one after the other."""
    rows = []
    blobs = []
    for task in tasks:
        blob = _fixed_encoder.encode(
            Fixed(
                task.func_name,
                task.payload,
                task.created_at.timestamp(),
                task.result_ttl,
                task.max_retries,
                task.retry_delay,
                task.timeout,
                task.depends_on,
                task.schedule_id,
            )
        )
        blobs.append(blob)
        rows.append(
            (
                task.id,
                task.status.value,
                task.queue_name,
                str(task.priority),
                repr(task.run_at.timestamp()),
                _time(task.expires_at),
                _time(task.lease_until),
                task.worker_id or "",
                str(task.attempts),
                _time(task.started_at),
                _time(task.finished_at),
                _error(task.error),
                task.key or "",
                str(len(blob)),
            )
        )
    return _rows_encoder.encode(rows), b"".join(blobs)


def finish_rows(tasks: list[Task]) -> bytes:
    """The finish script's rows: the claim's attempts, then the new state."""
    return _rows_encoder.encode(
        [
            (
                task.id,
                str(task.attempts),
                task.status.value,
                str(task.priority),
                repr(task.run_at.timestamp()),
                _time(task.expires_at),
                _time(task.lease_until),
                task.worker_id or "",
                _time(task.started_at),
                _time(task.finished_at),
                _error(task.error),
            )
            for task in tasks
        ]
    )


def change_fields(changes: dict[str, Any]) -> bytes:
    """The transition script's map of field -> new value ('' removes the field)."""
    fields = {}
    for name, value in changes.items():
        field = _MUTABLE.get(name)
        if field is None:
            raise ValueError(f"cannot change task field {name!r}")
        if name in ("status",):
            fields[field] = TaskStatus(value).value
        elif name in ("priority", "attempts"):
            fields[field] = str(int(value))
        elif name == "worker_id":
            fields[field] = value or ""
        elif name == "error":
            fields[field] = _error(value)
        else:
            fields[field] = _time(value)
    return _rows_encoder.encode(fields)


def decode_rows(meta: bytes, blobs: bytes) -> list[Task]:
    """Tasks from a script's reply: msgpack rows of ``[id, FIELDS..., blob size]`` and their
    blobs one after the other."""
    tasks = []
    offset = 0
    for row in _meta_decoder.decode(meta):
        size = row[14]
        if isinstance(size, int) and not isinstance(size, bool):
            tasks.append(task_from_fields(row, blobs[offset : offset + size]))
            offset += size
        else:
            tasks.append(task_from_fields(row, None))
    return tasks


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _epoch(value: Any) -> datetime | None:
    if value is None or value is False:
        return None
    return datetime.fromtimestamp(float(value), UTC)


_STATUS = {status.value: status for status in TaskStatus}


def task_from_fields(row: list[Any], blob: bytes | None) -> Task:
    """A Task from ``[id, s, q, p, r, e, l, w, a, b, f, x, k, n, ...]`` (str or bytes; None or
    False when absent) and its fixed blob."""
    if isinstance(row[1], bytes):  # read with HMGET: bytes; from a script's msgpack: str
        row = [v.decode() if isinstance(v, bytes) else v for v in row]
    task_id, status, queue, priority, run_at, expires, lease, worker, attempts = row[:9]
    started, finished, error, key = row[9:13]
    try:
        if blob is None:
            raise CorruptField("d", None, detail="(the task's fixed part) is missing")
        fixed = _fixed(blob)
        return check(
            Task(
                id=task_id,
                func_name=fixed.func_name,
                payload=fixed.payload,
                queue_name=queue or "default",
                priority=_read("priority", int, priority),
                status=_read("status", _STATUS.__getitem__, status),
                created_at=_read("created_at", _epoch, fixed.created_at),
                run_at=_read("run_at", _epoch, run_at),
                expires_at=_read("expires_at", _epoch, expires or None),
                result_ttl=fixed.result_ttl,
                max_retries=fixed.max_retries,
                retry_delay=fixed.retry_delay,
                timeout=fixed.timeout,
                depends_on=fixed.depends_on,
                key=key or None,
                schedule_id=fixed.schedule_id,
                attempts=_read("attempts", int, attempts),
                worker_id=worker or None,
                lease_until=_read("lease_until", _epoch, lease or None),
                started_at=_read("started_at", _epoch, started or None),
                finished_at=_read("finished_at", _epoch, finished or None),
                error=_read("error", _error_decoder.decode, error) if error else None,
            )
        )
    except _ERRORS as exc:
        return _salvage(str(task_id or "?"), row, exc)


def _fixed(blob: bytes) -> Fixed:
    try:
        return _fixed_decoder.decode(blob)
    except msgspec.ValidationError as exc:
        raise named(exc, Fixed.__struct_fields__) from exc


def _read(name: str, convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except _ERRORS as exc:
        raise CorruptField(name, value) from exc


def _salvage(task_id: str, row: list[Any], exc: Exception) -> Task:
    def field(read: Any, default: Any) -> Any:
        try:
            return read()
        except _ERRORS:
            return default

    return stand_in(
        task_id,
        exc,
        queue_name=field(lambda: _text(row[2]) or "default", "default"),
        priority=field(lambda: int(row[3]), 0),
        status=field(lambda: TaskStatus(_text(row[1]) or ""), TaskStatus.FAILED),
        run_at=field(lambda: _epoch(row[4]), None),
        key=field(lambda: _text(row[12]), None),
        attempts=field(lambda: int(row[8]), 0),
        worker_id=field(lambda: _text(row[7]), None),
        lease_until=field(lambda: _epoch(row[6]), None),
        started_at=field(lambda: _epoch(row[9]), None),
    )
