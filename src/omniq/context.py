"""What a running task can learn about itself: ``omniq.current_task()``."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["TaskContext", "current_task"]


@dataclass
class TaskContext:
    """The running task's id, attempt and cancellation flag."""

    task_id: str
    attempt: int
    queue_name: str
    worker_id: str
    cancelled: bool = False
    """True once the task was cancelled or timed out: a cooperative task should return."""

    def cancel(self) -> None:
        self.cancelled = True


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "omniq_task", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread or coroutine, or None outside a task."""
    return _current.get()


def set_current(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[TaskContext | None]) -> None:
    _current.reset(token)
