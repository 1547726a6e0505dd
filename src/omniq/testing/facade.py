"""``AsyncTestOmniQ`` and its sync twin ``TestOmniQ``: the facade for tests, with ``drain()``
and an eager mode."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.facade import AsyncOmniQ
from omniq.models import TaskResult, TaskStatus
from omniq.testing.draining import drain_queue
from omniq.workers import BaseWorker
from omniq.workflows import Node

__all__ = ["AsyncTestOmniQ", "SyncTestExtras"]


def _memory_components(project_name: str | None, settings: Settings | None) -> tuple[Any, ...]:
    from omniq.backends.memory.queue import AsyncMemoryTaskQueue
    from omniq.backends.memory.storage import AsyncMemoryEventStorage, AsyncMemoryResultStorage

    options: dict[str, Any] = {"project_name": project_name, "settings": settings}
    return (
        AsyncMemoryTaskQueue(**options),
        AsyncMemoryResultStorage(**options),
        AsyncMemoryEventStorage(**options),
    )


class AsyncTestOmniQ(AsyncOmniQ):
    """An :class:`~omniq.AsyncOmniQ` for tests: nothing runs until :meth:`drain` (or, with
    ``eager=True``, every enqueue runs its task before it returns).

    Tasks take the path of real runs: arguments are encoded at enqueue (an unencodable one
    raises there), stored, claimed by a real worker, decoded and run; results are encoded and
    stored. With no components and no ``base_dir`` everything lives in memory; with
    ``base_dir`` it is an SQLite database there (as ``OmniQ(base_dir=...)``).
    """

    __test__ = False  # not a pytest test class, whatever its name

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
        eager: bool = False,
        raise_errors: bool = False,
        drain_timeout: float = 30.0,
    ) -> None:
        """
        Args:
            worker, worker_config: the worker that :meth:`drain` starts (default: an
                ``AsyncWorker`` with one slot, so tasks run one at a time in claim order).
            eager: run the tasks of every ``enqueue``, ``enqueue_many`` and
                ``enqueue_workflow`` (and whatever they lead to) before it returns.
            raise_errors: :meth:`drain` (and so an eager enqueue) raises
                ``TaskFailedError`` for the first task that ended FAILED.
            drain_timeout: seconds :meth:`drain` waits before ``TimeoutError``.
            Other arguments as :class:`~omniq.AsyncOmniQ`.
        """
        if task_queue is None and base_dir is None:
            queue, results, events = _memory_components(project_name, settings)
            task_queue = queue
            result_store = results if result_store is None else result_store
            event_store = events if event_store is None else event_store
        if worker is None and worker_config is None:
            worker, worker_config = "async", {"max_workers": 1}
        super().__init__(
            project_name,
            task_queue,
            result_store,
            event_store,
            worker,
            worker_config,
            base_dir=base_dir,
            settings=settings,
        )
        self.eager = eager
        self.raise_errors = raise_errors
        self.drain_timeout = drain_timeout
        self._draining = False

    async def drain(
        self, timeout: float | None = None, *, raise_errors: bool | None = None
    ) -> dict[str, TaskResult]:
        """Run every pending, delayed, retrying and waiting task to its end, now.

        Delays (``run_at``/``run_in``, retry backoff) are skipped; dependents run once their
        dependencies succeed; tasks enqueued by tasks run too. Returns the results of the tasks
        that ended during the call, by task id in enqueue order. Starts the worker for the
        call (and stops it after) unless one is running; schedules are not fired. After
        ``timeout`` seconds: ``TimeoutError``, and the tasks still running go back to the queue.
        """
        if self._draining:
            raise ConfigError("drain: already draining (a task cannot drain its own queue)")
        self._draining = True
        own_worker, finished = self.worker is None, False
        try:
            if own_worker:
                await self.start_worker(scheduler=False)
            assert self.worker is not None
            results = await drain_queue(
                self.task_queue,
                self.result_store,
                self.worker,
                self.drain_timeout if timeout is None else timeout,
            )
            finished = True
        finally:
            if own_worker:
                # After a timeout, tasks still running are stopped and handed back at once.
                await self.stop_worker(None if finished else 0)
            self._draining = False
        if self.raise_errors if raise_errors is None else raise_errors:
            for result in results.values():
                if result.status is TaskStatus.FAILED:
                    result.unwrap()
        return results

    async def enqueue(
        self,
        func: Callable[..., Any] | str,
        func_args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        """Queue a call of ``func`` (eager: and run it); returns the task id."""
        task_id = await super().enqueue(func, func_args, **options)
        await self._run_eagerly()
        return task_id

    async def enqueue_many(self, calls: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many calls at once (eager: and run them)."""
        ids = await super().enqueue_many(calls)
        await self._run_eagerly()
        return ids

    async def enqueue_workflow(self, workflow: Node) -> str:
        """Store a workflow (eager: and run it); returns the id of its final task."""
        final_id = await super().enqueue_workflow(workflow)
        await self._run_eagerly()
        return final_id

    async def _run_eagerly(self) -> None:
        # Inside a drain (a task enqueueing another) the running drain takes the new task.
        if self.eager and not self._draining:
            await self.drain()


class SyncTestExtras:
    """What :class:`TestOmniQ` (generated in ``omniq.testing._twins``, an :class:`~omniq.OmniQ`)
    adds to its async class's members: it is no pytest test class."""

    __test__ = False
