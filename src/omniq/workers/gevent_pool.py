"""``GeventWorker``: many blocking-I/O tasks at once, each in a greenlet (``omniq[gevent]``).

How it runs: a dedicated OS thread runs a gevent hub with a ``gevent.pool.Pool(max_workers)``.
The worker's event loop hands calls to that thread in batches (one hub wake-up, through a libev
async watcher, for however many calls are waiting) and the greenlets hand outcomes back the same
way (one loop wake-up per batch), as :mod:`omniq.workers._threads` does for threads. Coroutine
functions do not go to the hub: they run on the worker's own event loop, as with
:class:`~omniq.workers.AsyncWorker`. asyncio allows one running loop per OS thread, so greenlets
sharing the hub's thread cannot each run one. A task that times out, is cancelled, or outlives
a graceful stop has its greenlet killed: ``GreenletExit`` is raised at its next cooperative point
(a patched ``sleep``, socket or lock call). Threads can only be asked to stop.

Monkey-patching rules. Greenlets take turns only where gevent gets control: ``gevent.sleep`` and
gevent's sockets, locks and queues. A plain ``time.sleep``, ``socket.recv`` or ``requests.get``
in an unpatched process blocks the hub, and every greenlet with it (the worker logs a warning).

- ``omniq worker --worker-type gevent`` (or a configured gevent worker) patches the process
  first, before it imports the ``--import`` modules, reads its configuration or creates any
  thread, loop or connection.
- In a program of your own, call :func:`patch` before anything else that creates threads,
  sockets or event loops (importing omniq creates none, so ``from omniq.workers.gevent_pool
  import patch; patch()`` may come first).
- :func:`patch` is ``patch_all(thread=False, queue=False, select=False)`` plus ``patch_select()``.
  Sockets, ``ssl``, ``time.sleep``, ``select.select``/``poll``, ``os``, ``subprocess`` and
  ``signal`` cooperate; ``threading``, ``queue`` and ``selectors.DefaultSelector`` stay real,
  because OmniQ runs its event loop in a real OS thread (:mod:`omniq._sync`), the SQLite backend
  feeds each connection's thread through a ``queue.SimpleQueue``, and this worker runs its hub in
  a thread of its own. Measured with gevent 26.9: with a plain ``patch_all()`` (threads become
  greenlets of the main thread) and with ``patch_all(thread=False)`` (gevent's queues are not
  safe across OS threads) the SQLite backend dies with ``LoopExit``; with gevent's selector
  patched, an asyncio loop outside the main thread (OmniQ's, so every sync twin) dies with
  ``LoopExit`` as soon as it idles. The worker refuses to start in a process patched those ways.
- CPU-bound code never yields: a greenlet computing for a second holds the whole pool (and
  cannot be killed) for that second. Use ``ProcessPoolWorker`` for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from omniq.context import TaskContext, reset_current, set_current
from omniq.errors import ConfigError, require
from omniq.models import Task
from omniq.workers._calls import is_async_callable
from omniq.workers._threads import settle
from omniq.workers.base import BaseWorker

__all__ = ["PATCH_OPTIONS", "AsyncGeventWorker", "patch"]

logger = logging.getLogger("omniq.worker")

PATCH_OPTIONS: dict[str, bool] = {"thread": False, "queue": False, "select": False}
"""The ``gevent.monkey.patch_all`` options OmniQ needs; :func:`patch` adds ``patch_select()``."""

_MUST_STAY_REAL = ("threading", "queue", "selectors")
_STOP = object()
_STOP_WAIT = 5.0  # seconds teardown waits for the hub thread to kill leftovers and exit


def patch() -> None:
    """Monkey-patch this process for the gevent worker (see the module docstring); call it
    before anything creates threads, sockets or event loops."""
    require("gevent", "gevent")
    import selectors  # noqa: F401 - DefaultSelector is bound to the real epoll/kqueue here

    from gevent import monkey

    monkey.patch_all(**PATCH_OPTIONS)
    monkey.patch_select()  # select.select/poll cooperate; selectors.DefaultSelector stays real


def _check_patching() -> None:
    from gevent import monkey

    wrong = [name for name in _MUST_STAY_REAL if monkey.is_module_patched(name)]
    if wrong:
        raise ConfigError(
            f"gevent worker: this process was monkey-patched with {', '.join(wrong)} patched, "
            "which breaks OmniQ's event-loop and storage threads; patch it with "
            "omniq.workers.gevent_pool.patch() (patch_all(thread=False, queue=False, "
            "select=False) plus patch_select()) instead"
        )
    if not monkey.is_module_patched("socket") or not monkey.is_module_patched("time"):
        logger.warning(
            "gevent worker in a process that is not monkey-patched: blocking calls such as "
            "time.sleep or socket I/O stall every greenlet; start it with `omniq worker "
            "--worker-type gevent` or call omniq.workers.gevent_pool.patch() first"
        )


class _Job:
    """One call on its way to a greenlet; ``greenlet`` and ``killed`` are touched in the hub."""

    __slots__ = ("args", "ctx", "func", "future", "greenlet", "killed", "kwargs")

    def __init__(
        self,
        future: asyncio.Future[Any],
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.future, self.func, self.args, self.kwargs, self.ctx = future, func, args, kwargs, ctx
        self.greenlet: Any = None
        self.killed = False


class _GreenletRunner:
    """A gevent hub in its own OS thread running calls submitted from one event loop."""

    def __init__(self, size: int, name: str = "omniq-gevent") -> None:
        self._size = size
        self._name = name
        self._lock = threading.Lock()  # never held across a greenlet switch
        self._jobs: list[Any] = []
        self._hub_wanted = False
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._delivery_wanted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hub_loop: Any = None
        self._waker: Any = None  # a libev async watcher: its send() is the thread-safe wake-up
        self._exited: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the hub thread (from the event loop that will submit calls)."""
        self._loop = loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._exited = loop.create_future()
        thread = threading.Thread(target=self._serve, args=(ready,), name=self._name, daemon=True)
        thread.start()
        await ready

    def submit(
        self, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], ctx: TaskContext
    ) -> _Job:
        """Run ``func(*args, **kwargs)`` in a greenlet; ``job.future`` resolves on the loop."""
        assert self._loop is not None, "_GreenletRunner.start() was not awaited"
        job = _Job(self._loop.create_future(), func, args, kwargs, ctx)
        self._send(job)
        return job

    def kill(self, job: _Job) -> None:
        """Kill the job's greenlet at its next cooperative point (or never start it)."""
        # Not through the job list: the dispatcher may be waiting for a pool slot that only
        # this kill frees.
        self._hub_loop.run_callback_threadsafe(_kill, job)

    async def shutdown(self) -> None:
        """Kill what still runs and end the hub thread (waits at most a few seconds)."""
        exited, self._exited = self._exited, None
        if exited is None:
            return
        self._send(_STOP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited, _STOP_WAIT)

    def _send(self, job: Any) -> None:
        with self._lock:
            self._jobs.append(job)
            wake = not self._hub_wanted
            self._hub_wanted = True
        if wake:
            self._waker.send()

    # --- in the hub thread -----------------------------------------------------------------------

    def _serve(self, ready: asyncio.Future[None]) -> None:
        import gevent
        from gevent.event import Event
        from gevent.pool import Pool

        try:
            hub = gevent.get_hub()
            pool = Pool(self._size)
            wake = Event()
            # The watcher also keeps the hub's loop alive while the dispatcher waits (with no
            # active watcher the wait would end in LoopExit).
            waker = hub.loop.async_()
            waker.start(wake.set)
        except BaseException as exc:  # start() must not wait forever
            self._call_loop(ready.set_exception, exc)
            raise
        self._hub_loop, self._waker = hub.loop, waker
        exited = self._exited
        self._call_loop(_resolve, ready)
        try:
            while True:
                wake.wait()
                with self._lock:
                    jobs, self._jobs = self._jobs, []
                    wake.clear()
                    self._hub_wanted = False
                for job in jobs:
                    if job is _STOP:
                        return
                    if not job.killed and not job.future.cancelled():
                        # Waits only while killed greenlets that have not reached a cooperative
                        # point yet still hold their slots.
                        pool.spawn(self._run, job)
        finally:
            waker.stop()
            pool.kill(timeout=_STOP_WAIT)
            hub.destroy(destroy_loop=True)
            if exited is not None:
                self._call_loop(_resolve, exited)

    def _run(self, job: _Job) -> None:
        import gevent

        job.greenlet = gevent.getcurrent()
        token = set_current(job.ctx)
        try:
            outcome: tuple[Any, Any, BaseException | None] = (
                job.future,
                job.func(*job.args, **job.kwargs),
                None,
            )
        except BaseException as exc:  # GreenletExit too: nobody awaits a killed job's future
            outcome = (job.future, None, exc)
        finally:
            reset_current(token)
        with self._lock:
            self._done.append(outcome)
            wake = not self._delivery_wanted
            self._delivery_wanted = True
        if wake:
            self._call_loop(self._deliver)

    def _call_loop(self, func: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(func, *args)

    # --- on the event loop -----------------------------------------------------------------------

    def _deliver(self) -> None:
        with self._lock:
            batch, self._done = self._done, []
            self._delivery_wanted = False
        for future, value, exc in batch:
            settle(future, value, exc)


def _kill(job: _Job) -> None:
    job.killed = True
    if job.greenlet is not None and not job.greenlet.dead:
        job.greenlet.kill(block=False)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncGeventWorker(BaseWorker):
    """Runs sync tasks in a pool of ``max_workers`` greenlets, for many tasks blocked on I/O,
    and coroutine functions on the worker's event loop. Blocking calls cooperate only in a
    monkey-patched process: run it with ``omniq worker --worker-type gevent`` (see
    :mod:`omniq.workers.gevent_pool`). A timed-out or cancelled task's greenlet is killed at
    its next cooperative point."""

    kind = "gevent"

    _pool: _GreenletRunner | None = None

    def __init__(self, **options: Any) -> None:
        """
        Args:
            **options: as :class:`~omniq.workers.base.BaseWorker`.

        Raises:
            MissingDependencyError: gevent is not installed (``pip install 'omniq[gevent]'``).
            ConfigError: the process was monkey-patched in a way OmniQ cannot run with.
        """
        require("gevent", "gevent")
        _check_patching()
        super().__init__(**options)

    async def _setup(self) -> None:
        self._pool = _GreenletRunner(self.max_workers)
        await self._pool.start()

    async def _teardown(self) -> None:
        if self._pool is not None:
            await self._pool.shutdown()
            self._pool = None

    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        func, args, kwargs = self._decode(task)
        if is_async_callable(func):
            return await _awaited(func(*args, **kwargs), ctx)
        assert self._pool is not None
        job = self._pool.submit(func, args, kwargs, ctx)
        try:
            value = await job.future
        except asyncio.CancelledError:
            ctx.cancel()
            self._pool.kill(job)
            raise
        if inspect.isawaitable(value):  # a plain callable that returned a coroutine
            value = await _awaited(value, ctx)
        return value


async def _awaited(awaitable: Any, ctx: TaskContext) -> Any:
    token = set_current(ctx)
    try:
        return await awaitable
    finally:
        reset_current(token)
