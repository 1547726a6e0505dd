"""OmniQ: a fast, embeddable task queue with interchangeable backends."""

from omniq._twins import OmniQ
from omniq.context import TaskContext, current_task
from omniq.errors import (
    ConfigError,
    OmniQError,
    SerializationError,
    StorageError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
)
from omniq.facade import AsyncOmniQ
from omniq.factories import EventStore, ResultStore, TaskQueue
from omniq.models import EventType, Task, TaskError, TaskEvent, TaskResult, TaskStatus
from omniq.task_function import TaskFunction

__all__ = [
    "AsyncOmniQ",
    "ConfigError",
    "EventStore",
    "EventType",
    "OmniQ",
    "OmniQError",
    "ResultStore",
    "SerializationError",
    "StorageError",
    "Task",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskEvent",
    "TaskFailedError",
    "TaskFunction",
    "TaskQueue",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "current_task",
]
__version__ = "0.1.0"
