"""OmniQ's records: immutable msgspec structs shared by every backend."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from omniq._lazy import lazy_exports
from omniq.errors import TaskFailedError

if TYPE_CHECKING:
    from omniq.backends.file.options import (
        FileEventStorageConfig,
        FileResultStorageConfig,
        FileTaskQueueConfig,
    )
    from omniq.backends.memory.options import (
        MemoryEventStorageConfig,
        MemoryResultStorageConfig,
        MemoryTaskQueueConfig,
    )
    from omniq.backends.nats.options import NATSResultStorageConfig, NATSTaskQueueConfig
    from omniq.backends.postgres.options import (
        PostgresEventStorageConfig,
        PostgresResultStorageConfig,
        PostgresTaskQueueConfig,
    )
    from omniq.backends.redis.options import RedisResultStorageConfig, RedisTaskQueueConfig
    from omniq.backends.sqlite.options import (
        SQLiteEventStorageConfig,
        SQLiteResultStorageConfig,
        SQLiteTaskQueueConfig,
    )

__all__ = [
    "CLAIMABLE",
    "FINAL",
    "ComponentConfig",
    "EventType",
    "FileEventStorageConfig",
    "FileResultStorageConfig",
    "FileTaskQueueConfig",
    "MemoryEventStorageConfig",
    "MemoryResultStorageConfig",
    "MemoryTaskQueueConfig",
    "NATSResultStorageConfig",
    "NATSTaskQueueConfig",
    "OmniQConfig",
    "PostgresEventStorageConfig",
    "PostgresResultStorageConfig",
    "PostgresTaskQueueConfig",
    "RedisResultStorageConfig",
    "RedisTaskQueueConfig",
    "SQLiteEventStorageConfig",
    "SQLiteResultStorageConfig",
    "SQLiteTaskQueueConfig",
    "Schedule",
    "ScheduleStatus",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskResult",
    "TaskStatus",
    "WorkerConfig",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class TaskStatus(enum.StrEnum):
    """Where a task is in its life cycle."""

    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def is_claimable(self) -> bool:
        return self in (TaskStatus.PENDING, TaskStatus.RETRYING)


_FINAL = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
)
CLAIMABLE = (TaskStatus.PENDING, TaskStatus.RETRYING)
"""Statuses a worker may claim (when due)."""
FINAL = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED)
"""Statuses a task never leaves (except by ``requeue``)."""


class EventType(enum.StrEnum):
    """Kinds of life-cycle events."""

    ENQUEUED = "enqueued"
    EXECUTING = "executing"
    COMPLETE = "complete"
    ERROR = "error"
    RETRY = "retry"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SCHEDULE_PAUSED = "schedule_paused"
    SCHEDULE_RESUMED = "schedule_resumed"


class TaskError(msgspec.Struct, frozen=True, kw_only=True):
    """An exception raised by a task, recorded as plain text."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, traceback: str | None = None) -> TaskError:
        return cls(type=type(exc).__qualname__, message=_message(exc), traceback=traceback)


def _message(exc: BaseException) -> str:
    """``str(exc)``, which runs the exception's own code: one whose ``__str__`` raises still
    gets a message."""
    try:
        return str(exc)
    except Exception as failure:
        return f"<str() of {type(exc).__qualname__} failed: {type(failure).__qualname__}>"


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A unit of work as stored in a task queue.

    ``payload`` holds the encoded function reference and arguments (see
    :mod:`omniq.serialization`); ``func_name`` is a readable name for listings.
    """

    id: str
    func_name: str
    payload: bytes
    queue_name: str = "default"
    priority: int = 0
    status: TaskStatus = TaskStatus.PENDING
    created_at: datetime
    run_at: datetime
    expires_at: datetime | None = None
    result_ttl: float | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    timeout: float | None = None
    depends_on: tuple[str, ...] = ()
    key: str | None = None
    schedule_id: str | None = None
    attempts: int = 0
    worker_id: str | None = None
    lease_until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: TaskError | None = None

    def evolve(self, **changes: Any) -> Task:
        """A copy with some fields changed."""
        return msgspec.structs.replace(self, **changes)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


class TaskResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a finished task: its value or its error."""

    task_id: str
    status: TaskStatus
    value: Any = None
    error: TaskError | None = None
    attempts: int = 0
    queue_name: str = "default"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    schedule_id: str | None = None
    expires_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.SUCCESS

    def unwrap(self) -> Any:
        """The value, or raise :class:`~omniq.errors.TaskFailedError` with the remote error."""
        if self.status is TaskStatus.SUCCESS:
            return self.value
        raise TaskFailedError(self.task_id, self.error)


class TaskEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step in a task's (or a schedule's) life cycle."""

    task_id: str
    type: EventType
    timestamp: datetime
    queue_name: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    duration: float | None = None
    error: TaskError | None = None
    schedule_id: str | None = None


class ScheduleStatus(enum.StrEnum):
    """Whether a schedule fires: ``finished`` ones have no run left (end, max_runs, one-off)."""

    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A recurring or one-off enqueue of a function (fired by the scheduler).

    Exactly one of ``cron``, ``interval`` (seconds) and ``run_at`` is set. ``options`` holds the
    fired tasks' enqueue options (priority, ttl, result_ttl, max_retries, retry_delay, timeout).
    ``pending_task_id`` is set between claiming a run and storing its task (crash recovery);
    ``recent_task_ids`` are the newest runs' task ids, newest last.
    """

    id: str
    func_name: str
    payload: bytes
    queue_name: str = "default"
    cron: str | None = None
    interval: float | None = None
    run_at: datetime | None = None
    timezone: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None
    catch_up: bool = False
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    next_run_at: datetime | None = None
    run_count: int = 0
    created_at: datetime | None = None
    last_run_at: datetime | None = None
    pending_task_id: str | None = None
    pending_since: datetime | None = None
    recent_task_ids: tuple[str, ...] = ()
    options: dict[str, Any] = {}

    def evolve(self, **changes: Any) -> Schedule:
        return msgspec.structs.replace(self, **changes)


# --- configuration structs -------------------------------------------------------------------
# Each backend's component configs live beside it (``omniq/backends/<name>/options.py``, each
# extending the backend's options struct); they are importable from here too, loaded on use.

_CONFIGS = {
    f"{kind}{component}Config": f"omniq.backends.{package}.options"
    for kind, package, components in (
        ("Memory", "memory", ("TaskQueue", "ResultStorage", "EventStorage")),
        ("File", "file", ("TaskQueue", "ResultStorage", "EventStorage")),
        ("SQLite", "sqlite", ("TaskQueue", "ResultStorage", "EventStorage")),
        ("Postgres", "postgres", ("TaskQueue", "ResultStorage", "EventStorage")),
        ("Redis", "redis", ("TaskQueue", "ResultStorage")),
        ("NATS", "nats", ("TaskQueue", "ResultStorage")),
    )
    for component in components
}
__getattr__, __dir__ = lazy_exports(__name__, _CONFIGS)


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options of every worker type (None: from :class:`omniq.config.Settings`)."""

    max_workers: Annotated[int, msgspec.Meta(gt=0)] | None = None
    queues: list[str] | None = None
    lease_timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    poll_interval: Annotated[float, msgspec.Meta(gt=0)] | None = None
    stop_timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    worker_id: str | None = None
    scheduler: bool = True
    claim_ahead: bool = True
    allowed_functions: list[str] | str | None = None


class ComponentConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One section of a facade configuration: a backend ``type`` (or a ``url``) and the
    component's options. ``type: none`` turns an event store off."""

    type: str | None = None
    url: str | None = None
    config: dict[str, Any] = {}


class OmniQConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole facade: the sections of an ``omniq.yaml`` file (missing ones: the defaults)."""

    project_name: str | None = None
    base_dir: str | None = None
    task_queue: ComponentConfig | None = None
    result_store: ComponentConfig | None = None
    event_store: ComponentConfig | None = None
    worker: ComponentConfig | None = None


def to_seconds(value: float | timedelta | None) -> float | None:
    """Seconds from a timedelta or a number (None stays None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
