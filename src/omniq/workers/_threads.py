"""A thread pool that hands results back to the event loop in batches.

``loop.run_in_executor`` wakes the loop once per finished call; with many short tasks those
wake-ups dominate. Here the threads append finished calls to a list and wake the loop only when
it is not already scheduled to collect them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from omniq.workers.base import RemoteError, task_error

__all__ = ["ThreadRunner", "settle"]

_STOP = object()


class ThreadRunner:
    """``size`` threads running calls submitted from one event loop."""

    def __init__(self, size: int, name: str = "omniq-worker") -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for i in range(self._size):
            thread = threading.Thread(target=self._serve, name=f"{self._name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``func(*args)`` in a pool thread; the future resolves on the loop."""
        assert self._loop is not None, "ThreadRunner.start() was not called"
        future = self._loop.create_future()
        self._jobs.put((future, func, args))
        return future

    def shutdown(self) -> None:
        """Let the threads exit once their current call returns (does not wait)."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        self._threads = []

    def _serve(self) -> None:
        jobs, done, lock = self._jobs, self._done, self._lock
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            future, func, args = job
            if future.cancelled():
                continue
            try:
                outcome: tuple[Any, Any, BaseException | None] = (future, func(*args), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (future, None, exc)
            with lock:
                done.append(outcome)
                wake = not self._scheduled
                self._scheduled = True
            if wake:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            batch = self._done.copy()
            self._done.clear()  # threads hold a reference to this very list
            self._scheduled = False
        for future, value, exc in batch:
            settle(future, value, exc)


def settle(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    """Resolve a future with what a call returned or raised (unless it was cancelled)."""
    if future.cancelled():
        return
    if exc is None:
        future.set_result(value)
    elif isinstance(exc, StopIteration | GeneratorExit):
        # Neither may travel through a future as itself: a future refuses StopIteration, and
        # GeneratorExit thrown into the awaiting coroutine closes the worker's frames above it
        # instead of reaching their handlers. They travel as a carried error.
        future.set_exception(RemoteError(task_error(exc)))
    else:
        future.set_exception(exc)
