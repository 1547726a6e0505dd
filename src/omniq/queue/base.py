"""The task-queue contract: public behaviour here, small atomic primitives in each backend.

A backend subclasses :class:`AsyncTaskQueue` and implements the underscore primitives. Each
primitive must be atomic with respect to every other process using the same storage; the
docstrings say exactly what each one guarantees. Validation, defaults and status rules live here,
once.
"""

from __future__ import annotations

import abc
import asyncio
import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from omniq._configurable import Component
from omniq._sync import as_async
from omniq.config import Settings, get_settings
from omniq.errors import ConfigError, SerializationError
from omniq.models import (
    CLAIMABLE,
    FINAL,
    EventType,
    Task,
    TaskEvent,
    TaskResult,
    TaskStatus,
    to_seconds,
    utcnow,
)
from omniq.serialization import Serializer

if TYPE_CHECKING:
    from omniq.storage.base import AsyncResultStorage

__all__ = ["CLAIMABLE", "FINAL", "AsyncTaskQueue", "enqueued_event", "new_id"]

_ENQUEUE_OPTIONS = frozenset(
    {
        "func",
        "func_args",
        "args",
        "queue_name",
        "priority",
        "run_at",
        "run_in",
        "ttl",
        "result_ttl",
        "max_retries",
        "retry_delay",
        "timeout",
        "depends_on",
        "key",
        "schedule_id",
    }
)


def new_id() -> str:
    """A new task id: 48 bits of milliseconds then 80 random bits, as 32 hex digits.

    Time-ordered ids keep database indexes append-mostly (inserts stay fast); the random part
    makes them unique across hosts.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


class AsyncTaskQueue(Component, abc.ABC):
    """Stores tasks in named queues with priorities, delays, TTL and leases."""

    #: Whether the storage is reached over a network (a server, object storage): then whoever
    #: can write to it can run code on workers without a secret key, and workers warn.
    networked: bool = False

    def __init__(
        self,
        *,
        project_name: str | None = None,
        queues: Sequence[str] | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        event_store: Any | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.project_name = project_name or self.settings.PROJECT_NAME
        _check_name("project_name", self.project_name)
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",") if q.strip()]
        if queues is not None:
            if not queues:
                raise ConfigError("queues: give at least one queue name, or None for any")
            for name in queues:
                _check_name("queues", name)
        self.queues: list[str] | None = list(queues) if queues is not None else None
        self._checked_queue_names: set[str] = set()
        self.serializer = serializer or Serializer(
            self.settings.SECRET_KEY, allow_pickle=self.settings.ALLOW_PICKLE
        )
        self.event_store: Any | None = None
        self._enqueued: Any | None = None  # EventBuffer, made on this object's loop
        self._owns_event_store = False
        if event_store is not None:
            self.use_event_store(event_store)

    def use_event_store(self, event_store: Any, *, owned: bool = False) -> None:
        """Record an ENQUEUED event in ``event_store`` (either twin) for every task stored from
        now on, unless this queue records them somewhere already; ``owned``: close it with
        this queue."""
        if self.event_store is None:
            self.event_store, self._owns_event_store = event_store, owned

    async def flush_events(self) -> None:
        """Write the ENQUEUED events still buffered."""
        if self._enqueued is not None:
            await self._enqueued.flush()

    def _record_enqueued(self, tasks: Sequence[Task], ids: Sequence[str]) -> None:
        """Buffer an ENQUEUED event for each task stored (not one a ``key`` matched): no round
        trip on the enqueue path, and a failing event store never fails an enqueue."""
        if self.event_store is None:
            return
        if self._enqueued is None:
            # Imported here: the workers package imports this module.
            from omniq.workers._events import EventBuffer

            self._enqueued = EventBuffer(as_async(self.event_store))
        self._enqueued.start()
        now = utcnow()
        for task, task_id in zip(tasks, ids, strict=True):
            if task.id == task_id:
                self._enqueued.emit(enqueued_event(task, now))

    # --- enqueueing --------------------------------------------------------------------------

    async def enqueue(
        self,
        func: Callable[..., Any] | str,
        func_args: Mapping[str, Any] | None = None,
        *,
        args: Sequence[Any] = (),
        queue_name: str = "default",
        priority: int = 0,
        run_at: datetime | None = None,
        run_in: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        result_ttl: timedelta | float | None = None,
        max_retries: int | None = None,
        retry_delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        depends_on: Sequence[str] | None = None,
        key: str | None = None,
        schedule_id: str | None = None,
    ) -> str:
        """Store a task and return its id (an existing live task's id when ``key`` matches)."""
        task = self.build_task(
            func,
            func_args,
            args=args,
            queue_name=queue_name,
            priority=priority,
            run_at=run_at,
            run_in=run_in,
            ttl=ttl,
            result_ttl=result_ttl,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            depends_on=depends_on,
            key=key,
            schedule_id=schedule_id,
        )
        if task.depends_on:
            await self._check_dependencies([task])
        (task_id,) = await self._insert([task])
        self._record_enqueued([task], [task_id])
        if task.depends_on and task_id == task.id:
            await self.release_if_ready([task])
        return task_id

    async def enqueue_many(self, calls: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many tasks at once; each item holds :meth:`enqueue`'s arguments by name."""
        tasks = []
        now = utcnow()  # one creation time for the batch
        for i, call in enumerate(calls):
            unknown = set(call) - _ENQUEUE_OPTIONS
            if unknown:
                raise ConfigError(
                    f"enqueue_many item {i}: unknown option(s) {sorted(unknown)}; "
                    f"allowed: {sorted(_ENQUEUE_OPTIONS)}"
                )
            if "func" not in call:
                raise ConfigError(f"enqueue_many item {i}: 'func' is required")
            options = dict(call)
            tasks.append(
                self.build_task(
                    options.pop("func"), options.pop("func_args", None), **options, _now=now
                )
            )
        waiting = [t for t in tasks if t.depends_on]
        if waiting:
            await self._check_dependencies(waiting)
        ids = await self._insert(tasks) if tasks else []
        self._record_enqueued(tasks, ids)
        if waiting:
            await self.release_if_ready(waiting)
        return ids

    async def _check_dependencies(self, tasks: list[Task]) -> None:
        wanted = {d for t in tasks for d in t.depends_on}
        found = await asyncio.gather(*(self._get(d) for d in wanted))
        missing = sorted(d for d, f in zip(wanted, found, strict=True) if f is None)
        if missing:
            raise ConfigError(f"depends_on: no task with id {', '.join(missing)}")

    async def release_if_ready(self, tasks: Sequence[Task]) -> list[str]:
        """Move WAITING tasks whose dependencies all succeeded to PENDING; returns their ids.

        Dependencies that failed are left to the dependency resolver of the workers (it records
        the cancellation's result and event)."""
        wanted = {d for t in tasks for d in t.depends_on}
        found = await asyncio.gather(*(self._get(d) for d in wanted))
        done = {
            d for d, f in zip(wanted, found, strict=True) if f and f.status is TaskStatus.SUCCESS
        }
        released = []
        for task in tasks:
            if task.depends_on and all(d in done for d in task.depends_on):
                moved = await self._transition(
                    task.id, (TaskStatus.WAITING,), status=TaskStatus.PENDING
                )
                if moved is not None:
                    released.append(task.id)
        return released

    async def enqueue_tasks(self, tasks: Sequence[Task]) -> list[str]:
        """Store tasks made by :meth:`build_task` in one atomic step (workflows, schedules);
        returns their ids (a live task's id where a ``key`` matched)."""
        if not tasks:
            return []
        ids = await self._insert(list(tasks))
        self._record_enqueued(tasks, ids)
        return ids

    def build_task(
        self,
        func: Callable[..., Any] | str,
        func_args: Mapping[str, Any] | None = None,
        *,
        args: Sequence[Any] = (),
        queue_name: str = "default",
        priority: int = 0,
        run_at: datetime | None = None,
        run_in: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        result_ttl: timedelta | float | None = None,
        max_retries: int | None = None,
        retry_delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        depends_on: Sequence[str] | None = None,
        key: str | None = None,
        schedule_id: str | None = None,
        _now: datetime | None = None,
        _inputs: tuple[str, list[str]] | None = None,
    ) -> Task:
        """Validate enqueue arguments and encode them into a :class:`Task` (no I/O)."""
        # Checked in the order of the parameters, so that the first bad one is reported; the
        # helpers are skipped where an option is absent (enqueue_many's cost per task).
        if queue_name not in self._checked_queue_names:
            self._check_queue_name(queue_name)
        _check_call_arguments(priority, func_args, args)
        now = _now or utcnow()
        eta = now if run_at is None and run_in is None else _due(run_at, run_in, now)
        ttl_s, result_ttl_s, retries, delay, timeout_s = _limits(
            self.settings, ttl, result_ttl, max_retries, retry_delay, timeout
        )
        deps: tuple[str, ...] = () if depends_on is None else _dependencies(depends_on)
        if key is not None and not isinstance(key, str):
            raise ConfigError(f"key must be a str, got {key!r}")
        task_id = new_id()
        payload = self._sealed_call(task_id, func, args, func_args, _inputs)
        return Task(
            id=task_id,
            func_name=self.serializer.name_of(func),
            payload=payload,
            queue_name=queue_name,
            priority=priority,
            status=TaskStatus.WAITING if deps else TaskStatus.PENDING,
            created_at=now,
            run_at=eta,
            expires_at=eta + timedelta(seconds=ttl_s) if ttl_s is not None else None,
            result_ttl=result_ttl_s,
            max_retries=retries,
            retry_delay=delay,
            timeout=timeout_s,
            depends_on=deps,
            key=key,
            schedule_id=schedule_id,
        )

    def _check_queue_name(self, queue_name: str) -> None:
        if self.queues is not None and queue_name not in self.queues:
            raise ConfigError(
                f"queue_name {queue_name!r} is not one of this queue's queues {self.queues}"
            )
        _check_name("queue_name", queue_name)
        self._checked_queue_names.add(queue_name)

    def _sealed_call(
        self,
        task_id: str,
        func: Callable[..., Any] | str,
        args: Sequence[Any],
        func_args: Mapping[str, Any] | None,
        inputs: tuple[str, list[str]] | None,
    ) -> bytes:
        """The task's encoded call, within ``MAX_PAYLOAD_SIZE``, sealed for ``task_id``."""
        call = self.serializer.encode_call(func, args, func_args or {}, inputs)
        limit = self.settings.MAX_PAYLOAD_SIZE
        if len(call) > limit:
            raise SerializationError(
                f"the encoded call is {len(call):,} bytes, more than MAX_PAYLOAD_SIZE "
                f"({limit:,} bytes); pass a reference to large data instead"
            )
        return self.serializer.seal(call, "task", self.project_name, task_id)

    # --- inspection and control --------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task | None:
        """The task with that id, or None."""
        return await self._get(task_id)

    async def cancel(self, task_id: str) -> bool:
        """Cancel an unfinished task (a running one is asked to stop); True if it was live."""
        task = await self._transition(
            task_id,
            (TaskStatus.PENDING, TaskStatus.WAITING, TaskStatus.RETRYING, TaskStatus.RUNNING),
            status=TaskStatus.CANCELLED,
            finished_at=utcnow(),
            lease_until=None,
        )
        return task is not None

    async def requeue(self, task_id: str) -> bool:
        """Put a FAILED, CANCELLED or EXPIRED task back to PENDING with fresh attempts."""
        task = await self._transition(
            task_id,
            (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED),
            status=TaskStatus.PENDING,
            attempts=0,
            run_at=utcnow(),
            expires_at=None,
            worker_id=None,
            lease_until=None,
            started_at=None,
            finished_at=None,
            error=None,
        )
        return task is not None

    async def transition(
        self, task_id: str, from_statuses: Sequence[TaskStatus], **changes: Any
    ) -> Task | None:
        """Low-level: apply ``changes`` if the task's status is one of ``from_statuses``
        (compare-and-set); the new task, or None. Used by dependencies and maintenance."""
        return await self._transition(task_id, tuple(from_statuses), **changes)

    async def list_tasks(
        self,
        queue_name: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        """Tasks, oldest first, filtered by queue and status."""
        return await self._list(queue_name, _status(status), limit)

    async def count(
        self, queue_name: str | None = None, status: TaskStatus | str | None = None
    ) -> int:
        """How many tasks match."""
        return await self._count(queue_name, _status(status))

    async def purge(self, queue_name: str | None = None) -> int:
        """Delete every task that is not running (of one queue, or all); returns how many."""
        return await self._purge(queue_name)

    # --- worker side -------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        *,
        queues: Sequence[str] | None = None,
        limit: int = 1,
        lease_timeout: float = 30.0,
        start: int | None = None,
    ) -> list[Task]:
        """Atomically take up to ``limit`` due tasks, leased to ``worker_id``.

        Order: the position of the task's queue in ``queues`` (default: this object's queues),
        then priority (higher first), then enqueue order. Without a queue order all queues
        count alike, on every backend: priority, then enqueue order across queues (never
        queue names). Tasks whose lease lapsed are taken again.

        Attempts: the first ``start`` tasks (default: all) start now, so their claim counts an
        attempt (``attempts + 1``, ``started_at`` = now). The others are claimed ahead: they
        keep their ``attempts`` and get ``started_at = None`` until :meth:`mark_started`
        counts them, so a worker that dies holding them costs them nothing. A task taken back
        from a lapsed lease always counts, wherever it falls: its lost worker may have started
        it, and a task that kills every worker must still run out of attempts.
        """
        now = utcnow()
        return await self._claim(
            worker_id,
            list(queues) if queues else self.queues,
            limit,
            now,
            now + timedelta(seconds=lease_timeout),
            limit if start is None else max(0, start),
        )

    async def mark_started(self, worker_id: str, tasks: Sequence[Task]) -> set[str]:
        """Count the attempts of tasks claimed ahead that now start: each task carries its new
        ``attempts`` (one more than claimed) and ``started_at``. Written only where the task is
        still RUNNING under ``worker_id``, claimed ahead (no ``started_at``) with one attempt
        fewer; returns the ids written."""
        if not tasks:
            return set()
        return set(await self._mark_started(worker_id, list(tasks)))

    async def renew(
        self, worker_id: str, task_ids: Sequence[str], lease_timeout: float
    ) -> set[str]:
        """Extend the leases of tasks ``worker_id`` holds; returns the ids it still holds."""
        if not task_ids:
            return set()
        return set(
            await self._renew(
                worker_id, list(task_ids), utcnow() + timedelta(seconds=lease_timeout)
            )
        )

    async def finish(self, worker_id: str, tasks: Sequence[Task]) -> set[str]:
        """Write the outcome of claimed tasks (status, error, run_at for a retry).

        Only tasks still RUNNING under ``worker_id`` with the same attempt count are written;
        returns the ids written. A task cancelled or re-claimed meanwhile is left alone.
        """
        if not tasks:
            return set()
        return set(await self._finish(worker_id, list(tasks)))

    @property
    def database(self) -> Hashable | None:
        """The database this queue's tasks live in, as an opaque identity: where a result
        storage reports the same, :meth:`record_outcomes` writes both in one transaction.
        None (the default): no result storage shares this queue's transactions."""
        return None

    async def record_outcomes(
        self,
        worker_id: str,
        tasks: Sequence[Task],
        results: Sequence[tuple[TaskResult, bytes]],
        result_store: AsyncResultStorage,
    ) -> set[str]:
        """Store ``results`` (each with its stored form, from ``result_store.encode``) in
        ``result_store`` and write the outcome of ``tasks`` (as :meth:`finish`) in one
        transaction; only for a result storage in this queue's database (the same
        :attr:`database`). Returns the ids of the outcomes written."""
        if self.database is None or result_store.database != self.database:
            raise ConfigError(
                f"record_outcomes: {result_store!r} does not live in the database of {self!r}"
            )
        return set(await self._record_outcomes(worker_id, list(tasks), list(results), result_store))

    # --- records: small versioned documents beside the tasks ----------------------------------

    async def get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        """The ``(version, data)`` of a record (schedules, worker heartbeats), or None."""
        _check_name("kind", kind)
        return await self._get_record(kind, key)

    async def list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        """Every record of one kind as ``(key, version, data)``, ordered by key."""
        _check_name("kind", kind)
        return await self._list_records(kind)

    async def put_record(self, kind: str, key: str, data: bytes) -> int:
        """Store a record whatever its version; returns the new version."""
        _check_name("kind", kind)
        return await self._put_record(kind, key, data)

    async def swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        """Store a record only if its stored version is ``version`` (0: only if absent).

        Returns the new version, or None when another writer got there first: the
        compare-and-set that schedules use to fire each run exactly once.
        """
        _check_name("kind", kind)
        return await self._swap_record(kind, key, data, version)

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete a record; True if there was one."""
        _check_name("kind", kind)
        return await self._delete_record(kind, key)

    async def wait_for_tasks(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a task may have become available in ``queues`` (default: any), or after
        ``timeout`` seconds. This default sleeps; backends that can be notified override it."""
        await asyncio.sleep(timeout)

    async def close(self) -> None:
        """Release connections and files (a backend's override calls this first)."""
        buffer, self._enqueued = self._enqueued, None
        if buffer is not None:
            await buffer.close()
        if self._owns_event_store:
            await as_async(self.event_store).close()

    async def __aenter__(self) -> AsyncTaskQueue:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # --- primitives --------------------------------------------------------------------------

    @abc.abstractmethod
    async def _insert(self, tasks: list[Task]) -> list[str]:
        """Store all tasks in one atomic step; returns their ids in order.

        A task whose ``key`` matches a stored task that is not final is not stored: that
        task's id is returned in its place.
        """

    @abc.abstractmethod
    async def _get(self, task_id: str) -> Task | None:
        """The stored task, or None."""

    @abc.abstractmethod
    async def _claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        """Atomically move up to ``limit`` tasks to RUNNING and return them as stored.

        Candidates: PENDING or RETRYING with ``run_at <= now``, and RUNNING with
        ``lease_until < now`` (a lost worker). Only queues in ``queues`` (all when None), ordered
        by queue position, priority descending, then insertion order; with ``queues=None``,
        priority descending then insertion order across all queues. Each taken task gets
        ``worker_id`` and ``lease_until``; the first ``start`` taken and every one that was
        RUNNING also get ``attempts + 1`` and ``started_at = now``, the others keep
        ``attempts`` and get ``started_at = None``. No task may be returned to two concurrent
        callers.
        """

    @abc.abstractmethod
    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        """Set ``attempts`` and ``started_at`` from each task where the stored one is still
        RUNNING under ``worker_id`` with ``started_at = None`` and ``attempts`` one fewer; atomic
        per task. Returns the ids written."""

    @abc.abstractmethod
    async def _renew(self, worker_id: str, task_ids: list[str], lease_until: datetime) -> list[str]:
        """Set ``lease_until`` on the tasks still RUNNING under ``worker_id``; return their ids."""

    @abc.abstractmethod
    async def _finish(self, worker_id: str, tasks: list[Task]) -> list[str]:
        """Store each task's new state if it is still RUNNING under ``worker_id`` with the same
        ``attempts``; atomic per task. Returns the ids written."""

    async def _record_outcomes(
        self,
        worker_id: str,
        tasks: list[Task],
        results: list[tuple[TaskResult, bytes]],
        result_store: AsyncResultStorage,
    ) -> list[str]:
        """Store results in ``result_store`` and :meth:`_finish` tasks in one transaction:
        the primitive of :meth:`record_outcomes`, for backends that report a :attr:`database`
        (``result_store`` is then the same backend's, on the same database)."""
        raise NotImplementedError(f"{type(self).__name__} reports no database")

    @abc.abstractmethod
    async def _transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], **changes: Any
    ) -> Task | None:
        """If the task's status is one of ``from_statuses``, apply ``changes`` atomically and
        return the new task; else None."""

    @abc.abstractmethod
    async def _list(
        self, queue_name: str | None, status: TaskStatus | None, limit: int
    ) -> list[Task]:
        """Up to ``limit`` tasks in insertion order."""

    @abc.abstractmethod
    async def _count(self, queue_name: str | None, status: TaskStatus | None) -> int:
        """How many tasks match."""

    @abc.abstractmethod
    async def _purge(self, queue_name: str | None) -> int:
        """Delete tasks that are not RUNNING; return how many."""

    @abc.abstractmethod
    async def _get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        """The stored ``(version, data)`` of ``(kind, key)`` in this project, or None."""

    @abc.abstractmethod
    async def _list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        """All ``(key, version, data)`` of ``kind`` in this project, ordered by key."""

    @abc.abstractmethod
    async def _put_record(self, kind: str, key: str, data: bytes) -> int:
        """Upsert: a new record gets version 1, an existing one its version + 1 (returned)."""

    @abc.abstractmethod
    async def _swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        """Atomically: if the stored version equals ``version`` (0 = no record), store ``data``
        with version + 1 and return it; else change nothing and return None."""

    @abc.abstractmethod
    async def _delete_record(self, kind: str, key: str) -> bool:
        """Delete ``(kind, key)``; True if it existed."""


def enqueued_event(task: Task, at: datetime) -> TaskEvent:
    """The ENQUEUED event of a stored task."""
    return TaskEvent(
        task_id=task.id,
        type=EventType.ENQUEUED,
        timestamp=at,
        queue_name=task.queue_name,
        schedule_id=task.schedule_id,
    )


def _limits(
    settings: Settings,
    ttl: timedelta | float | None,
    result_ttl: timedelta | float | None,
    max_retries: int | None,
    retry_delay: timedelta | float | None,
    timeout: timedelta | float | None,
) -> tuple[float | None, float | None, int, float, float | None]:
    """A task's ttl, result_ttl, max_retries, retry_delay and timeout (seconds), defaults
    from the settings filled in."""
    ttl_s = _seconds("ttl", ttl) if ttl is not None else settings.TASK_TTL
    result_ttl_s = (
        _seconds("result_ttl", result_ttl) if result_ttl is not None else settings.RESULT_TTL
    )
    retries = settings.RETRY_ATTEMPTS if max_retries is None else max_retries
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
    delay = (
        settings.RETRY_DELAY
        if retry_delay is None
        else _seconds("retry_delay", retry_delay, allow_zero=True)
    )
    timeout_s = _seconds("timeout", timeout) if timeout is not None else settings.TASK_TIMEOUT
    return ttl_s, result_ttl_s, retries, delay, timeout_s


def _check_call_arguments(
    priority: object, func_args: Mapping[str, Any] | None, args: Sequence[Any]
) -> None:
    if type(priority) is not int:
        raise ConfigError(f"priority must be an int, got {priority!r}")
    if func_args is not None and not isinstance(func_args, Mapping):
        raise ConfigError(
            f"func_args must be a dict of keyword arguments, got {type(func_args).__name__}"
        )
    if type(args) not in (tuple, list) and (
        isinstance(args, (str, bytes)) or not isinstance(args, Sequence)
    ):
        raise ConfigError(f"args must be a list or tuple of positional arguments, got {args!r}")


def _due(run_at: datetime | None, run_in: timedelta | float | None, now: datetime) -> datetime:
    """When a task enqueued ``now`` is due (a naive ``run_at`` is taken as UTC)."""
    if run_at is not None and run_in is not None:
        raise ConfigError("give run_at or run_in, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise ConfigError(f"run_at must be a datetime, got {run_at!r}")
        return run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC)
    if run_in is not None:
        return now + timedelta(seconds=_seconds("run_in", run_in, allow_zero=True))
    return now


def _dependencies(depends_on: Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(depends_on, str):
        raise ConfigError("depends_on must be a list of task ids, not one string")
    deps = tuple(depends_on or ())
    if any(not isinstance(d, str) or not d for d in deps):
        raise ConfigError(f"depends_on must be a list of task ids, got {depends_on!r}")
    return deps


def _check_name(field: str, value: object) -> None:
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or len(value) > 200
        or any(c in value for c in "/\\\0")
    ):
        raise ConfigError(
            f"{field} must be a name (not '.' or '..') without '/', '\\\\' or NUL, got {value!r}"
        )


def _seconds(field: str, value: timedelta | float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise ConfigError(f"{field} must be a timedelta or a number of seconds, got {value!r}")
    seconds = to_seconds(value)
    assert seconds is not None
    # The range test is also false for NaN, which passes "< 0".
    if not 0 <= seconds < float("inf") or (seconds == 0 and not allow_zero):
        raise ConfigError(
            f"{field} must be a finite number {'>= 0' if allow_zero else '> 0'} of seconds, "
            f"got {value!r}"
        )
    return seconds


def _status(status: TaskStatus | str | None) -> TaskStatus | None:
    if status is None:
        return None
    try:
        return TaskStatus(status)
    except ValueError as exc:
        raise ConfigError(
            f"status {status!r} is not one of {[s.value for s in TaskStatus]}"
        ) from exc
