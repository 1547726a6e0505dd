"""What a worker records when a task cannot run or raised where it ran."""

from __future__ import annotations

import traceback

from omniq.models import TaskError

__all__ = ["PermanentFailure", "RemoteError", "task_error"]


class PermanentFailure(Exception):
    """The task cannot run at all (undecodable payload, unimportable function): fail, no retry."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


class RemoteError(Exception):
    """An exception raised where the task ran (a child process), carried as a TaskError."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


def task_error(exc: BaseException) -> TaskError:
    """The TaskError recorded for an exception (with its traceback)."""
    if isinstance(exc, RemoteError):
        return exc.error
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskError.from_exception(exc, tb)
