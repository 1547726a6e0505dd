"""OmniQ's exceptions. Every error the library raises derives from :class:`OmniQError`.

OmniQError
├── ConfigError            bad configuration: names the field and the allowed values
├── SerializationError     an argument or result that cannot be encoded or decoded
│   └── SignatureError     a payload or pickle without a valid HMAC signature (secret key)
├── StorageError           a backend failed (driver errors are chained with ``from``)
├── FunctionNotAllowedError a task function outside the worker's allow-list
├── TaskNotFoundError      no task with that id
├── TaskFailedError        ``TaskResult.unwrap()`` on a failed task
├── TaskTimeoutError       an attempt outlived its ``timeout``
├── TaskCancelledError     the task was cancelled while it ran
├── MissingDependencyError an optional extra is not installed
└── LoopThreadError        a sync method was called from the thread that serves it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omniq.models import TaskError


class OmniQError(Exception):
    """Something went wrong in OmniQ."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(OmniQError, ValueError):
    """The configuration is invalid."""


class SerializationError(OmniQError, TypeError):
    """A value could not be serialized or deserialized."""


class SignatureError(SerializationError):
    """A payload or pickle is unsigned, or its signature does not match the secret key and
    the task, schedule or project it was signed for."""


class FunctionNotAllowedError(OmniQError):
    """The task's function is not on the worker's allow-list (``allowed_functions``)."""


class StorageError(OmniQError):
    """The storage backend failed."""


class TaskNotFoundError(OmniQError, KeyError):
    """No task with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TaskFailedError(OmniQError):
    """The task failed; ``error`` carries the remote error."""

    def __init__(self, task_id: str, error: TaskError | None) -> None:
        self.task_id = task_id
        self.error = error
        detail = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(f"task {task_id} failed: {detail}")


class TaskTimeoutError(OmniQError, TimeoutError):
    """The task attempt exceeded its timeout."""


class TaskCancelledError(OmniQError):
    """The task was cancelled."""


class MissingDependencyError(OmniQError, ImportError):
    """An optional dependency is missing."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is required for this feature: "
            f"install it with `pip install 'omniq[{extra}]'`"
        )


class LoopThreadError(OmniQError, RuntimeError):
    """A sync OmniQ method was called from inside OmniQ's own event-loop thread."""


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, naming the extra that provides it when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra) from exc
