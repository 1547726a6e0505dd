"""Django ``TaskResult``s from OmniQ's task, result and events (pure mapping, no I/O)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError as DjangoTaskError

import omniq.errors
from omniq.models import EventType, Task, TaskError, TaskEvent, TaskStatus
from omniq.models import TaskResult as OmniQResult

__all__ = ["STATUSES", "django_result", "exception_path"]

STATUSES = {
    TaskStatus.PENDING: TaskResultStatus.READY,
    TaskStatus.WAITING: TaskResultStatus.READY,
    TaskStatus.RETRYING: TaskResultStatus.READY,  # "ready to be executed again"
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.SUCCESS: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
    TaskStatus.EXPIRED: TaskResultStatus.FAILED,
}
"""OmniQ's statuses as Django's: a task that will not run any more (cancelled, expired) failed."""

_FAILED_ATTEMPT = (EventType.ERROR, EventType.RETRY, EventType.CANCELLED, EventType.EXPIRED)


def django_result(
    *,
    django_task: Any,
    task: Task,
    result: OmniQResult | None,
    events: Sequence[TaskEvent],
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
) -> TaskResult:
    """The Django view of one OmniQ task: its status, value, one error per failed attempt, the
    worker of each started attempt, and the enqueue, first start, last start and end times."""
    starts = [e for e in events if e.type is EventType.EXECUTING]
    worker_ids = [e.worker_id or "" for e in starts]
    # Events are written in batches: the task's own count is ahead of them for a moment.
    attempts = max(task.attempts, result.attempts if result else 0)
    worker_ids += [task.worker_id or ""] * (attempts - len(worker_ids))
    errors = [e.error for e in events if e.type in _FAILED_ATTEMPT and e.error is not None]
    final_error = result.error if result is not None else task.error
    if final_error is not None and (not errors or errors[-1] != final_error):
        errors.append(final_error)
    status = STATUSES[task.status]
    finished = None
    if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED):
        finished = (result.finished_at if result is not None else None) or task.finished_at
    django_result = TaskResult(
        task=django_task,
        id=task.id,
        status=status,
        enqueued_at=task.created_at,
        started_at=_first([e.timestamp for e in starts]) or task.started_at,
        last_attempted_at=(starts[-1].timestamp if starts else None) or task.started_at,
        finished_at=finished,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[_django_error(e) for e in errors],
        worker_ids=worker_ids,
    )
    if status is TaskResultStatus.SUCCESSFUL and result is not None:
        object.__setattr__(django_result, "_return_value", result.value)
    return django_result


def _first(times: list[datetime]) -> datetime | None:
    return min(times) if times else None


def _django_error(error: TaskError) -> DjangoTaskError:
    return DjangoTaskError(
        exception_class_path=exception_path(error), traceback=error.traceback or error.message
    )


def exception_path(error: TaskError) -> str:
    """The exception's import path: from the traceback's last line, which Python writes as
    ``module.Class: message`` (builtins without their module); OmniQ's own errors (a lost
    worker, a timeout) from :mod:`omniq.errors`."""
    if error.traceback:
        last = error.traceback.rstrip().rsplit("\n", 1)[-1]
        name = last.split(":", 1)[0].strip()
        if name.rsplit(".", 1)[-1] == error.type.rsplit(".", 1)[-1]:
            return name if "." in name else f"builtins.{name}"
    if isinstance(getattr(builtins, error.type, None), type):
        return f"builtins.{error.type}"
    if isinstance(getattr(omniq.errors, error.type, None), type):
        return f"omniq.errors.{error.type}"
    return error.type
