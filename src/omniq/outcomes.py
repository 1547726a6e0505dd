"""How a task ends: the one place that builds a final result and its event (pure, no I/O).

Every path that ends a task uses :func:`ending`: a worker recording what a run returned or
raised, a running task stopped by a cancel, ``cancel`` of a task that has not started, the
dependency resolver cancelling a task whose dependency broke, and maintenance expiring a task
whose TTL passed. So every final result honours the task's ``result_ttl`` (and is cleaned up
after it), and every final status emits the same kind of event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from omniq.errors import SerializationError
from omniq.models import EventType, Task, TaskError, TaskEvent, TaskResult, TaskStatus, utcnow

__all__ = ["FINAL_EVENTS", "ending", "result_expiry", "unstorable"]

#: The event each final status emits.
FINAL_EVENTS: dict[TaskStatus, EventType] = {
    TaskStatus.SUCCESS: EventType.COMPLETE,
    TaskStatus.FAILED: EventType.ERROR,
    TaskStatus.CANCELLED: EventType.CANCELLED,
    TaskStatus.EXPIRED: EventType.EXPIRED,
}


def result_expiry(finished: datetime, result_ttl: float | None) -> datetime | None:
    """When a result finished at ``finished`` expires; None: kept until deleted (no TTL, or one
    too large or not a number, as a stored row may hold: the result is kept, not lost)."""
    if result_ttl is None:
        return None
    try:
        return finished + timedelta(seconds=result_ttl)
    except (OverflowError, ValueError, TypeError):
        return None


def ending(
    task: Task,
    status: TaskStatus,
    *,
    value: Any = None,
    error: TaskError | None = None,
    worker_id: str | None = None,
    duration: float | None = None,
    now: datetime | None = None,
) -> tuple[TaskResult, TaskEvent]:
    """The final result of ``task`` ending with ``status`` and the event that records it."""
    finished = now or utcnow()
    result = TaskResult(
        task_id=task.id,
        status=status,
        value=value,
        error=error,
        attempts=task.attempts,
        queue_name=task.queue_name,
        started_at=task.started_at,
        finished_at=finished,
        worker_id=worker_id,
        schedule_id=task.schedule_id,
        expires_at=result_expiry(finished, task.result_ttl),
    )
    event = TaskEvent(
        task_id=task.id,
        type=FINAL_EVENTS[status],
        timestamp=finished,
        queue_name=task.queue_name,
        worker_id=worker_id,
        attempt=task.attempts,
        duration=duration,
        error=error,
        schedule_id=task.schedule_id,
    )
    return result, event


def unstorable(value: Any, exc: Exception) -> TaskError:
    """The error of a task whose returned value cannot be encoded (a generator, a lock, a list
    nested past the recursion limit, a tuple with pickling disabled): the task FAILED, not
    retried, since the same value would come back."""
    if isinstance(exc, SerializationError):
        message = TaskError.from_exception(exc).message
    else:  # RecursionError for a deeply nested value, say
        reason = TaskError.from_exception(exc)
        message = (
            f"task result of type {type(value).__qualname__} cannot be serialized: "
            f"{reason.type}: {reason.message}"
        )
    return TaskError(type="SerializationError", message=message)
