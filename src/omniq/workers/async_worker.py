"""``AsyncWorker``: coroutines run on the event loop itself; sync functions in threads."""

from __future__ import annotations

import contextvars
from typing import Any

from omniq.context import TaskContext, reset_current, set_current
from omniq.models import Task
from omniq.workers._calls import call_in_thread, is_async_callable
from omniq.workers._threads import ThreadRunner
from omniq.workers.base import BaseWorker

__all__ = ["AsyncWorker"]


class AsyncWorker(BaseWorker):
    """Runs async tasks concurrently on the running event loop (``max_workers`` at once) and
    sync tasks in a thread pool of the same size. Use ``async with AsyncWorker(...)``."""

    kind = "async"
    _pool: ThreadRunner | None = None

    async def _setup(self) -> None:
        self._pool = ThreadRunner(self.max_workers, name="omniq-sync")
        self._pool.start()

    async def _teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        func, args, kwargs = self._decode(task)
        if is_async_callable(func):
            token = set_current(ctx)
            try:
                return await func(*args, **kwargs)
            finally:
                reset_current(token)
        assert self._pool is not None
        context = contextvars.copy_context()
        return await self._pool.submit(context.run, call_in_thread, func, args, kwargs, ctx)
