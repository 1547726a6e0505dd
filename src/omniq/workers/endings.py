"""How a worker ends a run: the outcome it writes, built on the loop before any I/O.

An outcome is the task's new state (for the queue) with its final result already encoded (for
the result store), so that a value that cannot be stored fails its own task alone, never the
batch of outcomes it is written in.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from omniq.models import EventType, Task, TaskError, TaskEvent, TaskResult, TaskStatus, utcnow
from omniq.outcomes import ending, unstorable
from omniq.retry import retry_delay, should_retry
from omniq.workers._events import EventBuffer
from omniq.workers.failures import task_error

__all__ = ["NO_TASK", "Endings", "Outcome", "released"]

#: A task's new state (for the queue) with its final result, encoded (for the result store).
Outcome = tuple[Task, tuple[TaskResult, bytes] | None]
#: The task of an outcome that only stores a result (a task cancelled while it ran).
NO_TASK = Task(id="", func_name="", payload=b"", created_at=utcnow(), run_at=utcnow())


def released(task: Task) -> Task:
    """A claimed task as it goes back to the queue, due now."""
    return task.evolve(status=TaskStatus.PENDING, worker_id=None, lease_until=None, run_at=utcnow())


class Endings:
    """Builds a worker's outcomes (retry or final) and emits their events."""

    def __init__(self, worker_id: str, result_store: Any | None, events: EventBuffer) -> None:
        self.worker_id = worker_id
        self.result_store = result_store
        self.events = events

    def failure(self, task: Task, error: TaskError, duration: float | None) -> Outcome:
        """A run that raised: RETRYING while attempts are left, else FAILED."""
        if should_retry(task.attempts, task.max_retries):
            delay = retry_delay(task.attempts, task.retry_delay)
            retry = task.evolve(
                status=TaskStatus.RETRYING,
                run_at=utcnow() + timedelta(seconds=delay),
                worker_id=None,
                lease_until=None,
                error=error,
            )
            self.emit(task, EventType.RETRY, error=error, duration=duration)
            return retry, None
        return self.final(task, TaskStatus.FAILED, error=error, duration=duration)

    def broken(self, task: Task, exc: Exception) -> Outcome:
        """The outcome of a task whose outcome path raised: retried if its retry settings can
        be read, else FAILED; with or without a result, never none."""
        cause = task_error(exc)
        error = TaskError(
            type=cause.type,
            message=f"OmniQ could not record this task's outcome: {cause.message}",
            traceback=cause.traceback,
        )
        with contextlib.suppress(Exception):
            return self.failure(task, error, None)
        with contextlib.suppress(Exception):
            return self.final(task, TaskStatus.FAILED, error=error)
        done = task.evolve(
            status=TaskStatus.FAILED, finished_at=utcnow(), lease_until=None, error=error
        )
        return done, None

    def final(
        self,
        task: Task,
        status: TaskStatus,
        *,
        value: Any = None,
        error: TaskError | None = None,
        duration: float | None = None,
    ) -> Outcome:
        """The task ended: its outcome with its result already encoded."""
        result, event = ending(
            task, status, value=value, error=error, worker_id=self.worker_id, duration=duration
        )
        stored = None
        if self.result_store is not None:
            try:
                stored = result, self.result_store.encode(result)
            except Exception as exc:
                if status is not TaskStatus.SUCCESS:
                    raise
                # The same value would come back next time: FAILED, no retry.
                result, event = ending(
                    task,
                    TaskStatus.FAILED,
                    error=unstorable(value, exc),
                    worker_id=self.worker_id,
                    duration=duration,
                )
                stored = result, self.result_store.encode(result)
        if self.events.enabled:
            self.events.emit(event)
        done = task.evolve(
            status=result.status,
            finished_at=result.finished_at,
            lease_until=None,
            error=result.error,
        )
        return done, stored

    def emit(
        self,
        task: Task,
        kind: EventType,
        *,
        error: TaskError | None = None,
        duration: float | None = None,
        at: datetime | None = None,
    ) -> None:
        """Emit a life-cycle event of a task run by this worker (if events are recorded)."""
        if self.events.enabled:
            self.events.emit(
                TaskEvent(
                    task_id=task.id,
                    type=kind,
                    timestamp=at or utcnow(),
                    queue_name=task.queue_name,
                    worker_id=self.worker_id,
                    attempt=task.attempts,
                    duration=duration,
                    error=error,
                    schedule_id=task.schedule_id,
                )
            )
