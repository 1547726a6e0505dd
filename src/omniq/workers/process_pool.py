"""``ProcessPoolWorker``: each task runs in a child process (spawned, so it works everywhere).

Good for CPU-bound work. A task that outlives its ``timeout`` or is cancelled has its child
killed and replaced; a child that crashes fails only its own task (``ChildCrashed``, retried like
any failure); ``max_tasks_per_child`` recycles children. Leases are renewed by the parent.
"""

from __future__ import annotations

from typing import Any

from omniq._sync import SyncTwin
from omniq.context import TaskContext
from omniq.models import Task
from omniq.workers._children import _ERROR, _PERMANENT, ChildPool, error_from
from omniq.workers.base import BaseWorker, PermanentFailure, RemoteError
from omniq.workers.thread_pool import run_until_signalled

__all__ = ["AsyncProcessPoolWorker", "ProcessPoolWorker"]


class AsyncProcessPoolWorker(BaseWorker):
    """Runs every task in one of ``max_workers`` child processes (sync and async functions)."""

    kind = "process_pool"

    def __init__(self, *, max_tasks_per_child: int | None = None, **options: Any) -> None:
        """
        Args:
            max_tasks_per_child: replace a child after this many tasks (None: never).
            **options: as :class:`~omniq.workers.base.BaseWorker`.
        """
        super().__init__(**options)
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            from omniq.errors import ConfigError

            raise ConfigError(f"max_tasks_per_child must be >= 1, got {max_tasks_per_child!r}")
        self.max_tasks_per_child = max_tasks_per_child
        self._pool: ChildPool | None = None

    async def _setup(self) -> None:
        serializer = self.serializer
        self._pool = ChildPool(
            self.max_workers,
            secret_key=self.settings.SECRET_KEY,
            allow_pickle=getattr(serializer, "allow_pickle", True),
            max_tasks_per_child=self.max_tasks_per_child,
        )
        await self._pool.start()

    async def _teardown(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        assert self._pool is not None and self.serializer is not None
        kind, data = await self._pool.run(
            (task.id, task.attempts, task.queue_name, self.worker_id, task.payload)
        )
        if kind == _PERMANENT:
            raise PermanentFailure(error_from(data))
        if kind == _ERROR:
            raise RemoteError(error_from(data))
        return self.serializer.decode_value(data)


class ProcessPoolWorker(SyncTwin, twin=AsyncProcessPoolWorker):
    """Sync twin of :class:`AsyncProcessPoolWorker`: ``start()`` returns at once, ``run()``
    blocks until SIGINT/SIGTERM."""

    def run(self) -> None:
        """Process until SIGINT/SIGTERM (or ``stop()`` from another thread), then stop."""
        run_until_signalled(self)
