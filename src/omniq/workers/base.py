"""The worker core shared by every worker type: its public surface, composed of one piece per job.

A worker type only decides *where* a function runs (:meth:`BaseWorker._execute`): the event
loop, a thread pool, a process pool, greenlets. Everything else happens on the event loop that
owns the storages, in the pieces this class composes: claiming (:mod:`.claiming`: the claim
loop, claiming ahead), running one task to its outcome (:mod:`.running`, :mod:`.endings`),
writing outcomes (:mod:`.recording`: why results come before statuses), and the background
duties (:mod:`.housekeeping`: lease renewal, maintenance, dependencies) with the heartbeat.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from omniq._configurable import Configurable
from omniq._sync import as_async
from omniq._tasks import cancel_and_wait
from omniq.allowlist import AllowList
from omniq.config import Settings, get_settings
from omniq.context import TaskContext
from omniq.dependencies import DependencyResolver
from omniq.errors import ConfigError
from omniq.maintenance import Maintenance
from omniq.models import Task, TaskResult, TaskStatus, WorkerConfig
from omniq.scheduling.scheduler import AsyncScheduler
from omniq.workers._events import EventBuffer
from omniq.workers.claiming import Claimer
from omniq.workers.endings import Endings
from omniq.workers.failures import PermanentFailure, RemoteError, task_error
from omniq.workers.heartbeat import Heartbeat
from omniq.workers.housekeeping import Housekeeping, renew_interval
from omniq.workers.recording import Recorder
from omniq.workers.running import TaskRunner

__all__ = ["BaseWorker", "PermanentFailure", "RemoteError", "renew_interval", "task_error"]

logger = logging.getLogger("omniq.worker")


class BaseWorker(Configurable, abc.ABC):
    """Runs tasks from a task queue and records their results and events."""

    config_class = WorkerConfig
    #: The worker type's name as ``omniq worker --worker-type`` spells it.
    kind: ClassVar[str] = "custom"
    #: Whether this worker type may claim ahead of its free slots (:mod:`.claiming`).
    may_claim_ahead: ClassVar[bool] = True

    def __init__(
        self,
        *,
        queue: Any,
        result_store: Any | None = None,
        event_store: Any | None = None,
        queues: Sequence[str] | str | None = None,
        max_workers: int | None = None,
        lease_timeout: float | None = None,
        poll_interval: float | None = None,
        stop_timeout: float = 30.0,
        worker_id: str | None = None,
        scheduler: bool = True,
        claim_ahead: bool = True,
        allowed_functions: Sequence[str] | str | None = None,
        settings: Settings | None = None,
    ) -> None:
        """
        Args:
            queue: the task queue to consume (either twin).
            result_store: where results and errors go (optional).
            event_store: where life-cycle events go (optional; nothing is logged without one).
            queues: named queues to consume in strict priority order, first = highest
                (default: those of ``queue``, else all).
            max_workers: how many tasks run at once.
            lease_timeout: seconds a claim stays valid without renewal.
            poll_interval: longest idle wait before looking for tasks again where the backend
                cannot wake the worker.
            stop_timeout: how long a graceful stop waits for running tasks.
            worker_id: this worker's name in claims, events and heartbeats
                (default: host:pid:random).
            scheduler: also fire due schedules (any number of workers may; each run fires
                once).
            claim_ahead: while tasks are short (under 50 ms on average), claim beyond the free
                slots what they start within ~10 ms (at most 4 x ``max_workers``), so that
                claims bring more tasks and overlap running ones; False: claim only for free
                slots (no task waits in this worker that another could start).
            allowed_functions: run only functions whose import path matches one of these
                patterns (``"myapp.tasks:*"``; a list or a comma-separated string) or that
                are ``@oq.task`` functions of this process; anything else fails without being
                imported (default: ``ALLOWED_FUNCTIONS``; None: any function).
        """
        self.settings = settings or get_settings()
        if queue is None:
            raise ConfigError("queue: a task queue is required")
        self.queue = as_async(queue)
        self.result_store = as_async(result_store) if result_store is not None else None
        self.event_store = as_async(event_store) if event_store is not None else None
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",") if q.strip()]
        self.queues = list(queues) if queues else None
        self._watched = self.queues or getattr(self.queue, "queues", None)
        self.max_workers = _positive(
            "max_workers", self.settings.MAX_WORKERS if max_workers is None else max_workers, int
        )
        self.lease_timeout = _positive(
            "lease_timeout",
            self.settings.LEASE_TIMEOUT if lease_timeout is None else lease_timeout,
            float,
        )
        self.poll_interval = _positive(
            "poll_interval",
            self.settings.POLL_INTERVAL if poll_interval is None else poll_interval,
            float,
        )
        self.stop_timeout = float(stop_timeout)
        self.claim_ahead = bool(claim_ahead) and self.may_claim_ahead
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.serializer = getattr(self.queue, "serializer", None)
        self.allowed = AllowList(
            self.settings.ALLOWED_FUNCTIONS if allowed_functions is None else allowed_functions
        )
        self._events = EventBuffer(self.event_store)
        emit = self._events.emit if self._events.enabled else None
        self._resolver = DependencyResolver(self.queue, self.result_store, emit)
        self._maintenance = Maintenance(
            self.queue,
            self.result_store,
            self.event_store,
            emit,
            event_retention=self.settings.EVENT_RETENTION,
        )
        self.scheduler = (
            AsyncScheduler(self.queue, event_store=self.event_store) if scheduler else None
        )
        self._heartbeat = Heartbeat(self)
        endings = Endings(self.worker_id, self.result_store, self._events)
        self._runner = TaskRunner(self, endings)
        self._claimer = Claimer(self)
        self._recorder = Recorder(
            self.worker_id, self.queue, self.result_store, endings, self._outcomes_written
        )
        self._housekeeping = Housekeeping(self)
        self._running: dict[str, tuple[Task, asyncio.Task[None], TaskContext]] = {}
        self._ready = self._claimer.ready  # claimed ahead, not started (claim order)
        #: The timeout scopes of running tasks, for worker types that start them later.
        self._timeouts: dict[str, asyncio.Timeout] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._started = False
        self._done: asyncio.Event | None = None
        self.processed = 0

    # --- public ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start processing in the background on the running loop; returns at once."""
        if self._started:
            return
        self._started, self._stopping = True, False
        self._done = asyncio.Event()
        self._claimer.open()
        self._recorder.open()
        self._housekeeping.open()
        await self._setup()
        self._events.start()
        loop = asyncio.get_running_loop()
        housekeeping = self._housekeeping
        self._background = [
            loop.create_task(self._claimer.run(), name="omniq-claim"),
            loop.create_task(self._recorder.run(), name="omniq-flush"),
            loop.create_task(housekeeping.renew_loop(), name="omniq-renew"),
            loop.create_task(housekeeping.maintenance_loop(), name="omniq-maintenance"),
            loop.create_task(housekeeping.dependency_loop(), name="omniq-dependencies"),
            loop.create_task(self._heartbeat.run(), name="omniq-heartbeat"),
        ]
        if self.scheduler is not None:
            await self.scheduler.start()
        logger.info("worker %s started (%d slots)", self.worker_id, self.max_workers)
        if getattr(self.queue, "networked", False) and not getattr(
            self.serializer, "secret_key", None
        ):
            logger.warning(
                "worker %s: its task queue is reached over a network and no SECRET_KEY is set: "
                "whoever can write to that storage can run code on this worker (see SECURITY.md)",
                self.worker_id,
            )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new claims; running tasks get ``timeout`` seconds (default
        ``stop_timeout``) to finish, then are handed back to the queue; outcomes are written."""
        if not self._started:
            return
        self._stopping = True
        self._claimer.wake()
        if self.scheduler is not None:
            await self.scheduler.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._background[0]  # the claim loop: it ends after its claim in flight
        grace = self.stop_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Tasks claimed ahead start as slots free: wait for those too, within the grace period.
        while self._running and (remaining := deadline - loop.time()) > 0:
            pending = [entry[1] for entry in self._running.values()]
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        while self._ready:
            self._recorder.release(self._ready.popleft())
        if self._running:
            still = [entry[1] for entry in self._running.values()]
            for entry in list(self._running.values()):
                entry[2].cancel()
                entry[1].cancel(msg="release")
            await asyncio.wait(still, timeout=5)
        await self._recorder.drain(max(self.stop_timeout, 5.0))
        await cancel_and_wait(self._background[1:])
        await self._heartbeat.remove()
        await self._events.close()
        await self._teardown()
        self._background = []
        self._started = False
        assert self._done is not None
        self._done.set()
        logger.info("worker %s stopped after %d tasks", self.worker_id, self.processed)

    async def run(self) -> None:
        """Process until :meth:`stop` is called or SIGINT/SIGTERM arrives, then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop_requested.set)
                installed.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):
                pass  # not the main thread: only stop() ends run()
        assert self._done is not None
        done = self._done
        waiter = loop.create_task(stop_requested.wait())
        finished = loop.create_task(done.wait())
        try:
            await asyncio.wait([waiter, finished], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            finished.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
        if self._started:
            await self.stop()

    async def get_result(
        self, task_id: str, wait: bool = True, timeout: float | None = None
    ) -> TaskResult | None:
        """The task's result from the result store (waits by default)."""
        if self.result_store is None:
            raise ConfigError("result_store: this worker has no result store")
        return await self.result_store.get(task_id, wait=wait, timeout=timeout)

    def watch_dependencies(self) -> None:
        """Look at WAITING tasks now and after every recorded outcome (the facade calls this
        when it enqueues tasks with dependencies; other processes' are found within 1 s)."""
        self._housekeeping.watch_dependencies()

    async def flush_events(self) -> None:
        """Write the events buffered so far (they are otherwise written every 50 ms)."""
        await self._events.flush()

    async def join(self, timeout: float | None = None) -> None:
        """Wait until the queue has no pending, retrying or running task (tests, scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            busy = 0
            for status in (TaskStatus.PENDING, TaskStatus.RETRYING, TaskStatus.RUNNING):
                busy += await self.queue.count(status=status)
            if busy == 0 and not self._recorder.pending:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"queue still has {busy} unfinished tasks after {timeout} s")
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> BaseWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    # --- execution strategy ------------------------------------------------------------------

    async def _setup(self) -> None:
        """Create pools (called by start)."""

    async def _teardown(self) -> None:
        """Release pools (called by stop)."""

    @abc.abstractmethod
    async def _execute(self, task: Task, ctx: TaskContext) -> Any:
        """Run the task's call and return its value (or raise its exception); raise
        :class:`PermanentFailure` when the call cannot even be decoded."""

    def _decode(self, task: Task) -> tuple[Callable[..., Any], list[Any], dict[str, Any]]:
        """The task's function and arguments; a :class:`PermanentFailure` if they cannot be had."""
        call = self._checked_call(task)
        assert self.serializer is not None
        try:
            return self.serializer.decode_call(call, where_defined=self.allowed.enabled)
        except Exception as exc:  # unpickling runs user code: anything may come out
            raise PermanentFailure(task_error(exc)) from exc

    def _checked_call(self, task: Task) -> bytes:
        """The task's encoded call, its seal checked (with a secret key) and its function
        allowed, before anything is decoded or imported; a :class:`PermanentFailure` if not."""
        serializer = self.serializer
        assert serializer is not None
        try:
            call = serializer.unseal(task.payload, "task", self.queue.project_name, task.id)
            if self.allowed.enabled:
                self.allowed.check(serializer.function_ref(call))
        except Exception as exc:
            raise PermanentFailure(task_error(exc)) from exc
        return call

    # --- one task ----------------------------------------------------------------------------

    async def _run_task(self, task: Task, ctx: TaskContext) -> None:
        started = time.perf_counter()
        try:
            outcome = await self._runner.outcome(task, ctx)
        except Exception as exc:
            # Bad stored data or a bug on the way to the outcome: the task fails alone, its slot
            # is freed, and the worker goes on claiming.
            logger.exception("recording the outcome of task %s failed", task.id)
            outcome = self._runner.endings.broken(task, exc)
        finally:
            self._running.pop(task.id, None)
            self._claimer.start_ready()
        self._claimer.ran(time.perf_counter() - started)
        if outcome is not None:
            self._recorder.add(outcome)

    def _outcomes_written(self, tasks: int) -> None:
        self.processed += tasks
        self._housekeeping.outcomes_written()


def _positive(field: str, value: Any, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{field} must be a positive number, got {value!r}") from exc
    if not 0 < number < float("inf"):  # also false for NaN, which passes "<= 0"
        raise ConfigError(f"{field} must be a finite number > 0, got {value!r}")
    return number
