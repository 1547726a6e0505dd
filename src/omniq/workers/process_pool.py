"""``ProcessPoolWorker``: each task runs in a child process (spawned, so it works everywhere).

Good for CPU-bound work. A task that outlives its ``timeout`` or is cancelled has its child
killed and replaced; a child that crashes fails only its own task (``ChildCrashed``, retried like
any failure); ``max_tasks_per_child`` recycles children. Leases are renewed by the parent.

Between two tasks a child would wait about a millisecond while the parent records the outcome,
claims and sends the next task — a fifth of a 5 ms task. So while tasks are short, the worker
claims ``prefetch`` more tasks per child and queues them in the children's pipes, where they
start the moment the task before them ends. A queued task that is cancelled is skipped (or, if
it started after all, its child is killed). Tasks with a timeout are not queued behind another:
they wait in the parent for an idle child, and their timeout runs from the moment a child starts
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from omniq.context import TaskContext
from omniq.errors import ConfigError
from omniq.models import Task
from omniq.workers._children import _ERROR, _PERMANENT, ChildPool, error_from
from omniq.workers.base import BaseWorker, PermanentFailure, RemoteError

__all__ = ["AsyncProcessPoolWorker"]


class AsyncProcessPoolWorker(BaseWorker):
    """Runs every task in one of ``max_workers`` child processes (sync and async functions)."""

    kind = "process_pool"
    may_claim_ahead = False  # its children's pipes hold the tasks ahead (``prefetch``)
    _pool: ChildPool | None = None

    def __init__(
        self, *, max_tasks_per_child: int | None = None, prefetch: int = 2, **options: Any
    ) -> None:
        """
        Args:
            max_tasks_per_child: replace a child after this many tasks (None: never).
            prefetch: while tasks are short (under 100 ms on average), up to this many more
                tasks per child are claimed and wait in its pipe, so that it starts the next
                one without waiting for the parent; tasks with a timeout wait only for an idle
                child. 0: a task is claimed only for an idle child.
            **options: as :class:`~omniq.workers.base.BaseWorker`; ``max_workers`` is the
                number of child processes.
        """
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ConfigError(f"prefetch must be an int >= 0, got {prefetch!r}")
        self.prefetch = prefetch
        super().__init__(**options)
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigError(f"max_tasks_per_child must be >= 1, got {max_tasks_per_child!r}")
        self.max_tasks_per_child = max_tasks_per_child

    @property  # type: ignore[override]
    def max_workers(self) -> int:
        """How many tasks the worker holds at once (the shared core claims up to this many):
        one per child, and ``prefetch`` more per child while tasks are short."""
        if self.prefetch and (self._pool is None or self._pool.short_tasks):
            return self.processes * (1 + self.prefetch)
        return self.processes

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        self.processes = value  # the base class sets it: the number of children

    async def _setup(self) -> None:
        serializer = self.serializer
        assert serializer is not None
        # The children check what the queue's serializer checks: never this worker's settings,
        # which may lack the queue's key.
        self._pool = ChildPool(
            self.processes,
            secret_key=serializer.secret_key,
            allow_pickle=serializer.allow_pickle,
            where_defined=self.allowed.enabled,
            max_tasks_per_child=self.max_tasks_per_child,
            prefetch=self.prefetch,
        )
        await self._pool.start()

    async def _teardown(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        assert self._pool is not None and self.serializer is not None
        call = self._checked_call(task)  # here, before any child decodes or imports anything
        on_start: Callable[[], None] | None = None
        deadline = self._timeouts.get(task.id)
        if deadline is not None and task.timeout is not None:
            # The timeout runs from the moment a child starts the task, not while it waits for
            # an idle child (the worker claims ahead of them while tasks are short).
            deadline.reschedule(None)
            loop, seconds = asyncio.get_running_loop(), task.timeout

            def started() -> None:
                deadline.reschedule(loop.time() + seconds)

            on_start = started

        kind, data = await self._pool.run(
            (task.id, task.attempts, task.queue_name, self.worker_id, call),
            may_wait=task.timeout is None,
            on_start=on_start,
        )
        if kind == _PERMANENT:
            raise PermanentFailure(error_from(data))
        if kind == _ERROR:
            raise RemoteError(error_from(data))
        return self.serializer.decode_value(data)
