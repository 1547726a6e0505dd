"""``ThreadPoolWorker``: every task runs in a pool thread; coroutines on that thread's loop."""

from __future__ import annotations

import signal
import threading
from typing import Any

from omniq.context import TaskContext
from omniq.models import Task
from omniq.workers._calls import call_in_thread
from omniq.workers._threads import ThreadRunner
from omniq.workers.base import BaseWorker

__all__ = ["AsyncThreadPoolWorker", "SyncRun", "run_until_signalled"]


class AsyncThreadPoolWorker(BaseWorker):
    """Runs every task in a pool of ``max_workers`` threads (sync and async functions alike).
    Threads cannot be killed: a timed-out or cancelled task is asked to stop through
    ``omniq.current_task().cancelled``."""

    kind = "thread_pool"
    _pool: ThreadRunner | None = None

    async def _setup(self) -> None:
        self._pool = ThreadRunner(self.max_workers)
        self._pool.start()

    async def _teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        func, args, kwargs = self._decode(task)
        assert self._pool is not None
        return await self._pool.submit(call_in_thread, func, args, kwargs, ctx)


def run_until_signalled(worker: Any) -> None:
    """Sync ``run()``: start, block the calling thread until SIGINT/SIGTERM (or stop()), stop."""
    worker.start()
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    target = worker._target()
    try:
        while not stop.wait(0.2) and target._started:
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if target._started:
            worker.stop()


class SyncRun:
    """What the sync worker twins add to their async classes' members: a blocking ``run()``
    (their ``start()`` returns at once)."""

    def run(self) -> None:
        """Process until SIGINT/SIGTERM (or ``stop()`` from another thread), then stop."""
        run_until_signalled(self)
