"""``AsyncWorker``: coroutines run on the event loop itself; sync functions in threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
from collections.abc import Callable
from typing import Any

from omniq.context import TaskContext, reset_current, set_current
from omniq.models import Task
from omniq.workers._calls import call_in_thread
from omniq.workers.base import BaseWorker

__all__ = ["AsyncWorker"]


class AsyncWorker(BaseWorker):
    """Runs async tasks concurrently on the running event loop (``max_workers`` at once) and
    sync tasks in a thread pool of the same size. Use ``async with AsyncWorker(...)``."""

    _pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def _setup(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.max_workers, thread_name_prefix="omniq-sync"
        )

    async def _teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _execute(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: TaskContext,
        task: Task,
    ) -> Any:
        if inspect.iscoroutinefunction(getattr(func, "__omniq_func__", func)):
            token = set_current(ctx)
            try:
                return await func(*args, **kwargs)
            finally:
                reset_current(token)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(
            self._pool, context.run, call_in_thread, func, args, kwargs, ctx
        )
