"""Stored tasks that cannot be read, the same way on every backend.

A task's storage may be written by anyone who can reach it (a bad migration, a script, a
hand-edited row), and a column or field may then hold a value of the wrong type. Each backend's
codec checks what it read with :func:`check` and, when a field is wrong, hands out
:func:`stand_in` instead of raising: a task with an empty payload, no retries and an error that
names the field. Claims, listings and counts go on; a worker that claims the stand-in fails it
at once (FAILED with that error) and the other tasks of the queue run.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

from omniq.models import Task, TaskError, TaskStatus, utcnow

__all__ = ["CORRUPT", "CorruptField", "check", "is_stand_in", "named", "stand_in"]

log = logging.getLogger("omniq")

CORRUPT = "CorruptTask"  # the error type of a stand-in
_warned: set[str] = set()  # task ids whose stand-in was logged (bounded)
_DUE = datetime(1970, 1, 1, tzinfo=UTC)

_NONE = type(None)
_TYPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("id", (str,)),
    ("func_name", (str,)),
    ("payload", (bytes,)),
    ("queue_name", (str,)),
    ("priority", (int,)),
    ("status", (TaskStatus,)),
    ("created_at", (datetime,)),
    ("run_at", (datetime,)),
    ("expires_at", (datetime, _NONE)),
    ("result_ttl", (int, float, _NONE)),
    ("max_retries", (int,)),
    ("retry_delay", (int, float)),
    ("timeout", (int, float, _NONE)),
    ("depends_on", (tuple,)),
    ("key", (str, _NONE)),
    ("schedule_id", (str, _NONE)),
    ("attempts", (int,)),
    ("worker_id", (str, _NONE)),
    ("lease_until", (datetime, _NONE)),
    ("started_at", (datetime, _NONE)),
    ("finished_at", (datetime, _NONE)),
    ("error", (TaskError, _NONE)),
)
_COUNTS = ("priority", "max_retries", "attempts")
_SECONDS = ("result_ttl", "retry_delay", "timeout")


class CorruptField(ValueError):
    """A stored task's field holds a value of the wrong type or range."""

    def __init__(self, field: str, value: object, *, detail: str | None = None) -> None:
        shown = repr(value)
        if detail is None:
            detail = f"holds {shown[:60]}{'...' if len(shown) > 60 else ''}"
        super().__init__(f"field {field!r} {detail}")
        self.field = field


def check(task: Task) -> Task:
    """``task`` if every field holds what it should; else :class:`CorruptField` naming the
    first that does not (a Task is built without type checks, so a codec calls this)."""
    for name, types in _TYPES:
        value = getattr(task, name)
        if not isinstance(value, types):
            raise CorruptField(name, value)
    for name in _COUNTS:
        if type(getattr(task, name)) is bool:
            raise CorruptField(name, getattr(task, name))
    if task.attempts < 0:
        raise CorruptField("attempts", task.attempts)
    if task.max_retries < 0:
        raise CorruptField("max_retries", task.max_retries)
    for name in _SECONDS:
        value = getattr(task, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise CorruptField(name, value)
    for moment, name in ((task.run_at, "run_at"), (task.created_at, "created_at")):
        if moment.tzinfo is None or moment.year in (1, 9999):  # unset, or +/- infinity
            raise CorruptField(name, moment)
    return task


def named(exc: Exception, array_fields: tuple[str, ...] = ()) -> Exception:
    """A decoding error of a stored task, as a :class:`CorruptField` when its message says
    where (msgspec's ``$.name``, or ``$[i]`` of an array whose fields are ``array_fields``)."""
    message = str(exc)
    where = re.search(r"`\$(?:\[\d+\])?\.(\w+)`", message)
    if where is not None:
        return CorruptField(where.group(1), None, detail=f"is wrong: {message}")
    at = re.search(r"`\$\[(\d+)\]`", message)
    if at is not None and int(at.group(1)) < len(array_fields):
        return CorruptField(array_fields[int(at.group(1))], None, detail=f"is wrong: {message}")
    return exc


def stand_in(task_id: str, why: Exception | str, **known: Any) -> Task:
    """The task handed out for a stored one that cannot be read: the fields that could be read
    (``known``, each already of its type; ``run_at=None``: due), an empty payload, no
    retries, and an error saying what is wrong (``why``). Logged once per task (every listing
    reads it again)."""
    reason = f"stored task is corrupt: {why}"
    if task_id not in _warned:
        if len(_warned) >= 1000:
            _warned.clear()
        _warned.add(task_id)
        log.warning("task %s: %s; it is handed out to fail", task_id, reason)
    fields: dict[str, Any] = {"func_name": "?", "status": TaskStatus.FAILED, **known}
    fields.setdefault("created_at", utcnow())
    if fields.get("run_at") is None:
        fields["run_at"] = _DUE  # whatever the claim's "now", due: it is handed out at once
    return Task(
        id=task_id,
        payload=b"",
        max_retries=0,  # nothing to gain from retrying a task that cannot be read
        error=TaskError(type=CORRUPT, message=reason),
        **fields,
    )


def is_stand_in(task: Task) -> bool:
    """Whether ``task`` stands in for a stored task that could not be read."""
    return not task.payload and task.error is not None and task.error.type == CORRUPT
