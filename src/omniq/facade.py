"""``AsyncOmniQ`` and its sync twin ``OmniQ``: one object holding a task queue, a result store,
an event store and a worker."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, overload

import msgspec

from omniq._configurable import _allowed_keywords, load_yaml, validate_options
from omniq._redact import redact
from omniq._sync import as_async
from omniq.backend.base import Backend, component_class
from omniq.config import Settings, get_settings
from omniq.errors import ConfigError, TaskCancelledError
from omniq.logs import configure_logging
from omniq.models import (
    ComponentConfig,
    EventType,
    OmniQConfig,
    Schedule,
    Task,
    TaskError,
    TaskEvent,
    TaskStatus,
)
from omniq.outcomes import ending
from omniq.queue.base import AsyncTaskQueue
from omniq.registry import worker_class
from omniq.scheduling import AsyncScheduler
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage
from omniq.task_function import TaskFunction
from omniq.urls import parse_url
from omniq.workers import BaseWorker
from omniq.workers._events import EventBuffer
from omniq.workers.heartbeat import WorkerInfo, list_workers
from omniq.workflows import Node, build_workflow

__all__ = ["AsyncOmniQ", "SyncTask"]

P = ParamSpec("P")
R = TypeVar("R")


def _default_components(
    project_name: str, base_dir: str, settings: Settings
) -> tuple[Any, Any, Any]:
    from omniq.backends.sqlite.queue import AsyncSQLiteTaskQueue
    from omniq.backends.sqlite.storage import AsyncSQLiteEventStorage, AsyncSQLiteResultStorage

    db_path = os.path.join(base_dir, "omniq.db")
    return (
        AsyncSQLiteTaskQueue(project_name=project_name, db_path=db_path, settings=settings),
        AsyncSQLiteResultStorage(project_name=project_name, db_path=db_path, settings=settings),
        AsyncSQLiteEventStorage(project_name=project_name, db_path=db_path, settings=settings),
    )


class AsyncOmniQ:
    """Task queue, result store, event store and worker behind one object.

    With no arguments everything is embedded SQLite under ``Settings.BASE_DIR``
    (``OMNIQ_BASE_DIR``). Components may be given as either twin, from any backend.
    """

    def __init__(
        self,
        project_name: str | None = None,
        task_queue: Any | None = None,
        result_store: Any | None = None,
        event_store: Any | None = None,
        worker: str | type[BaseWorker] | None = None,
        worker_config: Mapping[str, Any] | None = None,
        *,
        base_dir: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        """
        Args:
            project_name: namespace for the default components (default: ``Settings.PROJECT_NAME``).
            task_queue, result_store, event_store: components; the missing ones default to
                SQLite under ``base_dir`` when no task queue is given. Pass ``event_store=False``
                to log no events.
            worker: ``"async"``, ``"thread"``/``"thread_pool"`` or a worker class
                (default: ``Settings.DEFAULT_WORKER``).
            worker_config: keyword arguments for the worker (``max_workers``, ``queues``, ...).
        """
        self.settings = settings or get_settings()
        self.project_name = project_name or self.settings.PROJECT_NAME
        if task_queue is None:
            queue, results, events = _default_components(
                self.project_name, base_dir or self.settings.BASE_DIR, self.settings
            )
            result_store = results if result_store is None else result_store
            event_store = events if event_store is None else event_store
            task_queue = queue
        self.task_queue: AsyncTaskQueue = as_async(task_queue)
        self.result_store: AsyncResultStorage | None = (
            as_async(result_store) if result_store else None
        )
        self.event_store: AsyncEventStorage | None = as_async(event_store) if event_store else None
        worker = worker or self.settings.DEFAULT_WORKER
        if isinstance(worker, str):
            worker = worker_class(worker, field="worker")
        self.worker_class = worker
        self.worker_config = validate_options(
            worker, {k: v for k, v in (worker_config or {}).items()}, where="worker_config"
        )
        for reserved in ("queue", "result_store", "event_store", "settings"):
            if reserved in self.worker_config:
                raise ConfigError(f"worker_config: {reserved!r} is set by the facade itself")
        self.worker: BaseWorker | None = None
        self._events = EventBuffer(self.event_store)
        if self.event_store is not None:
            # The queue records ENQUEUED for every way in (enqueue, workflows, schedules).
            self.task_queue.use_event_store(self.event_store)
        self.scheduler = AsyncScheduler(self.task_queue, event_store=self.event_store)

    # --- construction from configuration -------------------------------------------------------

    @classmethod
    def from_backend(
        cls,
        backend: Backend,
        result_store_backend: Backend | None = None,
        event_store_backend: Backend | None = None,
        worker_type: str | None = None,
        worker_config: Mapping[str, Any] | None = None,
        *,
        queues: Sequence[str] | None = None,
        settings: Settings | None = None,
    ) -> AsyncOmniQ:
        """Components from backends: the task queue from ``backend``; results from
        ``result_store_backend`` (default ``backend``); events from ``event_store_backend``
        (default ``backend`` when it has an event storage, else none)."""
        events_from = event_store_backend or (backend if backend.has_event_store else None)
        events = events_from.event_store() if events_from is not None else None
        queue_options: dict[str, Any] = {"event_store": events}
        if queues:
            queue_options["queues"] = list(queues)
        return cls(
            task_queue=backend.task_queue(**queue_options),
            result_store=(result_store_backend or backend).result_store(),
            event_store=events if events is not None else False,
            worker=worker_type,
            worker_config=worker_config,
            settings=settings,
        )

    @classmethod
    def from_config(cls, config: OmniQConfig, *, settings: Settings | None = None) -> AsyncOmniQ:
        """Build from an :class:`~omniq.models.OmniQConfig` (missing sections: defaults)."""
        settings = settings or get_settings()
        project = config.project_name or settings.PROJECT_NAME
        base_dir = config.base_dir or settings.BASE_DIR
        # A URL setting names its backend itself and wins over the (defaulted) type setting.
        queue_section = config.task_queue or _section(
            settings.TASK_QUEUE_TYPE, settings.TASK_QUEUE_URL
        )
        result_section = config.result_store or _section(
            settings.RESULT_STORAGE_TYPE, settings.RESULT_STORAGE_URL
        )
        event_section = config.event_store or _section(
            settings.EVENT_STORAGE_TYPE, settings.EVENT_STORAGE_URL
        )
        configure_logging(settings)
        worker = config.worker or ComponentConfig(type=settings.DEFAULT_WORKER)
        build = _ComponentBuilder(project, base_dir, settings)
        return cls(
            project_name=project,
            task_queue=build("task_queue", queue_section),
            result_store=build("result_store", result_section) or False,
            event_store=build("event_store", event_section) or False,
            worker=worker_class(worker.type or settings.DEFAULT_WORKER, field="worker.type"),
            worker_config=dict(worker.config),
            settings=settings,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, settings: Settings | None = None) -> AsyncOmniQ:
        """Build from a dict with the sections ``task_queue``, ``result_store``, ``event_store``
        and ``worker``, each ``{"type": ..., "config": {...}}`` (or ``{"url": ...}``)."""
        try:
            config = msgspec.convert(dict(data), OmniQConfig, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"omniq configuration: {_with_suggestion(exc)}") from exc
        return cls.from_config(config, settings=settings)

    @classmethod
    def from_config_file(cls, path: str, *, settings: Settings | None = None) -> AsyncOmniQ:
        """Build from a YAML file (see :meth:`from_dict`)."""
        return cls.from_dict(load_yaml(path), settings=settings)

    @classmethod
    def from_env(cls) -> AsyncOmniQ:
        """Build from ``OMNIQ_*`` environment variables (``OMNIQ_TASK_QUEUE_URL``, ...)."""
        settings = Settings.from_env()
        worker = ComponentConfig(
            type=settings.DEFAULT_WORKER, config={"max_workers": settings.MAX_WORKERS}
        )
        return cls.from_config(OmniQConfig(worker=worker), settings=settings)

    # --- tasks -------------------------------------------------------------------------------

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
        """Queue a call of ``func``; options as ``AsyncTaskQueue.enqueue``. Returns the task id."""
        task_id: str = await self.task_queue.enqueue(
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
        if depends_on and self.worker is not None:
            self.worker.watch_dependencies()
        return task_id

    async def enqueue_many(self, calls: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many calls at once (each a dict of :meth:`enqueue` arguments)."""
        calls = list(calls)
        ids = await self.task_queue.enqueue_many(calls)
        if self.worker is not None and any(call.get("depends_on") for call in calls):
            self.worker.watch_dependencies()
        return ids

    async def enqueue_workflow(self, workflow: Node) -> str:
        """Store a chain, group or chord (``omniq.workflows``) in one step; returns the id of
        the task whose result is the workflow's result."""
        tasks, final_id = build_workflow(self.task_queue, workflow)
        await self.task_queue.enqueue_tasks(tasks)
        if self.worker is not None:
            self.worker.watch_dependencies()
        return final_id

    @overload
    def task(self, func: Callable[P, R]) -> TaskFunction[P, R, Coroutine[Any, Any, str]]: ...
    @overload
    def task(
        self, func: None = None, **options: Any
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R, Coroutine[Any, Any, str]]]: ...
    def task(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorator: ``@oq.task(queue_name="low")`` adds ``.enqueue(*args, **kwargs)``."""
        return _decorate(self.enqueue, func, options)

    async def get_task(self, task_id: str) -> Task | None:
        """The stored task, or None."""
        return await self.task_queue.get_task(task_id)

    async def get_result(
        self,
        task_id: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        *,
        schedule_id: str | None = None,
        kind: Literal["latest", "all"] = "latest",
    ) -> Any:
        """The task's result; with ``wait``, block until it exists (or raise ``TimeoutError``).

        With ``schedule_id`` instead: ``kind="latest"`` is the newest run's result that exists
        (None if none), ``kind="all"`` the list of the kept results of its last 100 runs,
        oldest first.
        """
        if self.result_store is None:
            raise ConfigError("result_store: this OmniQ has no result store")
        if (task_id is None) == (schedule_id is None):
            raise ConfigError("get_result: give a task_id or a schedule_id (one of them)")
        if task_id is not None:
            return await self.result_store.get(task_id, wait=wait, timeout=timeout)
        if kind not in ("latest", "all"):
            raise ConfigError(f"kind must be 'latest' or 'all', got {kind!r}")
        schedule = await self.scheduler.get(schedule_id)  # type: ignore[arg-type]
        if schedule is None:
            raise ConfigError(f"schedule_id: no schedule {schedule_id!r}")
        ids = list(schedule.recent_task_ids)
        if kind == "latest":
            for run_id in reversed(ids):
                result = await self.result_store.get(run_id)
                if result is not None:
                    return result
            if wait and ids:
                return await self.result_store.get(ids[-1], wait=True, timeout=timeout)
            return None
        found = [await self.result_store.get(run_id) for run_id in ids]
        return [r for r in found if r is not None]

    # --- schedules ---------------------------------------------------------------------------

    async def schedule(
        self,
        func: Callable[..., Any] | str,
        func_args: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        interval: timedelta | float | None = None,
        run_at: datetime | None = None,
        **options: Any,
    ) -> str:
        """Fire ``func`` on a ``cron`` string, every ``interval`` or once at ``run_at``;
        returns the schedule id. Options as :meth:`AsyncScheduler.add`. Workers fire due
        runs (each exactly once, whatever the number of workers)."""
        schedule_id = await self.scheduler.add(
            func, func_args, cron=cron, interval=interval, run_at=run_at, **options
        )
        if self.worker is not None and self.worker.scheduler is not None:
            self.worker.scheduler.wake()
        return schedule_id

    async def pause_schedule(self, schedule_id: str) -> bool:
        """Stop a schedule from firing; False if it is not active."""
        return await self.scheduler.pause(schedule_id)

    async def resume_schedule(self, schedule_id: str) -> bool:
        """Fire a paused schedule again (missed runs are skipped); False if not paused."""
        return await self.scheduler.resume(schedule_id)

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; True if it existed."""
        return await self.scheduler.delete(schedule_id)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""
        return await self.scheduler.get(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule of the project."""
        return await self.scheduler.list()

    async def list_workers(self) -> list[WorkerInfo]:
        """Workers of this project seen alive in the last 15 seconds (their heartbeats)."""
        return await list_workers(self.task_queue)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task that has not finished; a running one is asked to stop."""
        before = await self.task_queue.get_task(task_id)
        if not await self.task_queue.cancel(task_id):
            return False
        if before is not None and before.status is not TaskStatus.RUNNING:
            error = TaskError.from_exception(TaskCancelledError("cancelled before it ran"))
            result, event = ending(before, TaskStatus.CANCELLED, error=error)
            if self.result_store is not None:
                await self.result_store.put(result)
            if self._events.enabled:
                self._events.start()
                self._events.emit(event)
        return True

    async def requeue(self, task_id: str) -> bool:
        """Put a failed, cancelled or expired task back in its queue."""
        ok = await self.task_queue.requeue(task_id)
        if ok and self.result_store is not None:
            await self.result_store.delete(task_id)
        return ok

    async def list_tasks(
        self,
        queue_name: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        """Tasks filtered by queue and status."""
        return await self.task_queue.list_tasks(queue_name, status, limit)

    async def count(
        self, queue_name: str | None = None, status: TaskStatus | str | None = None
    ) -> int:
        """How many tasks match."""
        return await self.task_queue.count(queue_name, status)

    async def purge(self, queue_name: str | None = None) -> int:
        """Delete tasks that are not running."""
        return await self.task_queue.purge(queue_name)

    async def get_events(
        self,
        task_id: str | None = None,
        event_type: EventType | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[TaskEvent]:
        """Stored events (after flushing this object's pending ones)."""
        if self.event_store is None:
            return []
        await self._events.flush()
        await self.task_queue.flush_events()
        if self.worker is not None:
            await self.worker.flush_events()
        return await self.event_store.get_events(task_id, event_type, since, until, limit)

    # --- worker ------------------------------------------------------------------------------

    async def start_worker(self, **overrides: Any) -> None:
        """Start the worker in the background (``overrides`` update ``worker_config``)."""
        if self.worker is not None:
            return
        config = {**self.worker_config, **overrides}
        try:
            self.worker = self.worker_class(
                queue=self.task_queue,
                result_store=self.result_store,
                event_store=self.event_store,
                settings=self.settings,
                **config,
            )
        except TypeError as exc:
            raise ConfigError(f"worker_config: {exc}") from exc
        await self.worker.start()

    async def stop_worker(self, timeout: float | None = None) -> None:
        """Stop the worker gracefully."""
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.stop(timeout)

    async def join(self, timeout: float | None = None) -> None:
        """Wait until no task is pending, retrying or running (needs a started worker)."""
        if self.worker is None:
            raise ConfigError("join: no worker is running; call start_worker() first")
        await self.worker.join(timeout)

    async def close(self) -> None:
        """Stop the worker and close every component."""
        await self.stop_worker()
        await self._events.close()
        for component in (self.task_queue, self.result_store, self.event_store):
            if component is not None:
                await component.close()

    async def __aenter__(self) -> AsyncOmniQ:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def _section(kind: str | None, url: str | None) -> ComponentConfig:
    return ComponentConfig(url=url) if url else ComponentConfig(type=kind)


class _ComponentBuilder:
    """Builds one facade component from its configuration section."""

    def __init__(self, project_name: str, base_dir: str, settings: Settings) -> None:
        self.project_name, self.base_dir, self.settings = project_name, base_dir, settings

    def __call__(self, component: str, section: ComponentConfig) -> Any | None:
        kind, options = section.type, dict(section.config)
        if section.url:
            url_kind, url_options = parse_url(section.url, field=f"{component}.url")
            if section.type and section.type != url_kind and component != "event_store":
                raise ConfigError(
                    f"{component}: type {section.type!r} does not match url {redact(section.url)!r}"
                )
            kind, options = url_kind, {**url_options, **options}
        if kind is None or kind.lower() in ("none", "off", "false"):
            if component == "task_queue":
                raise ConfigError("task_queue.type: a task queue is required")
            return None
        cls = component_class(kind, component, field=f"{component}.type")
        allowed = _allowed_keywords(cls)
        options.setdefault("project_name", self.project_name)
        if "base_dir" in allowed and "db_path" not in options and "base_dir" not in options:
            options["base_dir"] = self.base_dir
        return cls(
            **validate_options(cls, options, where=f"{component}.config"), settings=self.settings
        )


def _with_suggestion(exc: msgspec.ValidationError) -> str:
    from omniq.registry import suggest

    message = str(exc)
    if "unknown field" in message:
        name = message.split("`")[1] if "`" in message else ""
        inside = re.search(r"at `\$\.(\w+)`", message)
        where = f"{inside.group(1)}." if inside else ""
        fields = list((ComponentConfig if inside else OmniQConfig).__struct_fields__)
        return f"unknown key {where}{name}{suggest(name, fields)}; allowed: {fields}"
    return message


def _decorate(submit: Callable[..., Any], func: Callable[..., Any] | None, options: Any) -> Any:
    if func is not None:
        return TaskFunction(func, submit, options)
    return lambda f: TaskFunction(f, submit, options)


class SyncTask:
    """What :class:`OmniQ` adds to its async class's members: ``task()`` whose ``.enqueue``
    blocks."""

    @overload
    def task(self, func: Callable[P, R]) -> TaskFunction[P, R, str]: ...
    @overload
    def task(
        self, func: None = None, **options: Any
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R, str]]: ...
    def task(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorator: ``@oq.task(queue_name="low")`` adds ``.enqueue(*args, **kwargs)``."""
        return _decorate(self.enqueue, func, options)  # type: ignore[attr-defined]
