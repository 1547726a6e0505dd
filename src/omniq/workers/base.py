"""The worker core shared by every worker type: claim, lease, run, record, retry, events.

A worker type only decides *where* a function runs (:meth:`BaseWorker._execute`): the event
loop, a thread pool, a process pool, greenlets. Everything else happens here, on the event loop
that owns the storages.

Crash reasoning: a claimed task is leased to this worker. Its result is written before the task's
final status; if the process dies in between, the lease lapses, the task runs again (at least
once), and the result is overwritten. A task is never claimed by another worker while its lease
is alive, because leases are renewed every third of ``lease_timeout`` while the task runs and
until its outcome is written.

Claiming ahead: while tasks are short (a mean run under ``_SHORT_TASK``), a claim's round trip
costs more than the tasks it brings, so the worker claims beyond its free slots as many tasks as
its slots start within ``_AHEAD_HORIZON`` (at the mean run time; at most ``_AHEAD_MAX *
max_workers``): each claim brings more tasks, and the next is in flight while they run.
They wait in ``_ready`` (leased and renewed like running ones) and start in claim order the
moment a slot frees; claims never overlap, so strict queue priority holds. A graceful stop runs
them too, within the grace period; SIGKILL leaves them to lease recovery like running ones.
Only the tasks a claim starts at once count an attempt there (``start=`` the free slots); one
claimed ahead counts when it starts, written by the flush loop before its outcome (``finish``
compares attempts). So a worker killed while holding tasks ahead costs them no attempt, and a
task that kills its worker still runs out of attempts: taking a task back from a lapsed lease
always counts one.
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
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from omniq._configurable import Configurable
from omniq._corrupt import is_stand_in
from omniq._sync import as_async
from omniq._tasks import cancel_and_wait, wait_within
from omniq.allowlist import AllowList
from omniq.config import Settings, get_settings
from omniq.context import TaskContext
from omniq.dependencies import DependencyResolver
from omniq.errors import ConfigError, SerializationError, TaskCancelledError, TaskTimeoutError
from omniq.maintenance import Maintenance
from omniq.models import (
    EventType,
    Task,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    WorkerConfig,
    utcnow,
)
from omniq.outcomes import ending, unstorable
from omniq.retry import retry_delay, should_retry
from omniq.scheduling.scheduler import AsyncScheduler
from omniq.workers._events import EventBuffer
from omniq.workers.heartbeat import Heartbeat

__all__ = ["BaseWorker", "PermanentFailure", "RemoteError", "renew_interval", "task_error"]

logger = logging.getLogger("omniq.worker")

_MAINTENANCE_INTERVAL = 60.0  # seconds between deletions of old results and events
_EXPIRY_INTERVAL = 5.0  # seconds between looks for tasks whose TTL passed
_DEPENDENCY_INTERVAL = 1.0  # longest wait between looks at WAITING tasks
_WRITE_RETRY_DELAY = 0.5
_SPLIT_PROBES = 3  # outcomes of a refused batch tried alone before the storage is deemed down
_CLAIM_GATHER = 0.002  # seconds a busy worker may wait to claim for several free slots at once
_SHORT_TASK = 0.05  # seconds: below this mean run time, the worker claims ahead (see above)
_AHEAD_HORIZON = 0.01  # seconds: a task claimed ahead waits about this long for its slot
_AHEAD_MAX = 4  # claiming ahead, a worker holds at most this many times max_workers tasks more


class PermanentFailure(Exception):
    """The task cannot run at all (undecodable payload, unimportable function): fail, no retry."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


class RemoteError(Exception):
    """An exception raised where the task ran (a child process), carried as a TaskError."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


class BaseWorker(Configurable, abc.ABC):
    """Runs tasks from a task queue and records their results and events."""

    config_class = WorkerConfig
    #: The worker type's name as ``omniq worker --worker-type`` spells it.
    kind: ClassVar[str] = "custom"
    #: Whether this worker type may claim ahead of its free slots (module docstring).
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
        self._dependencies_waiting = True  # until a look says otherwise
        self._dependencies_wanted: asyncio.Event | None = None
        self._running: dict[str, tuple[Task, asyncio.Task[None], TaskContext]] = {}
        self._ready: deque[Task] = deque()  # claimed ahead, not started (claim order)
        self._mean_run: float | None = None  # moving average of task run times (seconds)
        #: The timeout scopes of running tasks, for worker types that start them later.
        self._timeouts: dict[str, asyncio.Timeout] = {}
        self._unwritten: dict[str, Task] = {}
        self._completions: list[_Outcome] = []
        self._refused_ids: set[str] = set()  # outcomes the storage refused once (_refused)
        self._starts: list[Task] = []  # tasks claimed ahead that started, attempt not written
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._started = False
        self._wake: asyncio.Event | None = None
        self._flush_wanted: asyncio.Event | None = None
        self._flushed: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self.processed = 0

    # --- public ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start processing in the background on the running loop; returns at once."""
        if self._started:
            return
        self._started, self._stopping = True, False
        self._wake, self._flush_wanted = asyncio.Event(), asyncio.Event()
        self._flushed, self._done = asyncio.Event(), asyncio.Event()
        self._dependencies_wanted = asyncio.Event()
        await self._setup()
        self._events.start()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._claim_loop(), name="omniq-claim"),
            loop.create_task(self._flush_loop(), name="omniq-flush"),
            loop.create_task(self._renew_loop(), name="omniq-renew"),
            loop.create_task(self._maintenance_loop(), name="omniq-maintenance"),
            loop.create_task(self._dependency_loop(), name="omniq-dependencies"),
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
        assert self._wake is not None
        self._wake.set()
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
            self._release(self._ready.popleft())
        if self._running:
            still = [entry[1] for entry in self._running.values()]
            for entry in list(self._running.values()):
                entry[2].cancel()
                entry[1].cancel(msg="release")
            await asyncio.wait(still, timeout=5)
        await self._drain_completions()
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
        self._dependencies_waiting = True
        if self._dependencies_wanted is not None:
            self._dependencies_wanted.set()

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
            if busy == 0 and not self._completions and not self._unwritten:
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
            raise PermanentFailure(_error(exc)) from exc

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
            raise PermanentFailure(_error(exc)) from exc
        return call

    # --- loops -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                await self._claim_until_stopped()
            except Exception:
                # A storage error while waiting must not end claiming silently.
                logger.exception("claim loop failed; restarting it")
                await asyncio.sleep(self.poll_interval)

    def _claiming_ahead(self) -> bool:
        # Not before a task has finished: a fresh worker must not hoard long tasks.
        return self.claim_ahead and self._mean_run is not None and self._mean_run < _SHORT_TASK

    def _claimable(self) -> int:
        """How many tasks a claim may ask for now."""
        ahead = 0
        if self._claiming_ahead():
            assert self._mean_run is not None
            per_slot = _AHEAD_HORIZON / max(self._mean_run, 1e-6)
            ahead = min(_AHEAD_MAX * self.max_workers, max(1, int(self.max_workers * per_slot)))
        return self.max_workers + ahead - len(self._running) - len(self._ready)

    async def _claim_until_stopped(self) -> None:
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        batch = max(1, self.max_workers // 2)
        while not self._stopping:
            free = self._claimable()
            if free <= 0:
                wake.clear()
                await wake.wait()
                continue
            if free < batch and self._running:
                # Let a few more slots free up so one claim serves several tasks (claims are the
                # costliest storage call per task); bounded by _CLAIM_GATHER so slow tasks lose
                # nothing.
                deadline = loop.time() + _CLAIM_GATHER
                while free < batch and (remaining := deadline - loop.time()) > 0:
                    wake.clear()
                    if not await wait_within(wake.wait(), remaining):
                        break
                    free = self._claimable()
                if self._stopping:
                    break
                if free <= 0:
                    continue
            try:
                tasks = await self.queue.claim(
                    self.worker_id,
                    queues=self.queues,
                    limit=free,
                    lease_timeout=self.lease_timeout,
                    start=self.max_workers - len(self._running) - len(self._ready),
                )
            except Exception:
                logger.exception("claiming tasks failed; retrying")
                tasks = None
            if not tasks:
                await self._idle(self.poll_interval)
                continue
            self._ready.extend(tasks)
            self._start_ready()

    def _start_ready(self) -> None:
        """Start tasks claimed ahead, in claim order, while slots are free."""
        loop = asyncio.get_running_loop()
        while self._ready and len(self._running) < self.max_workers:
            # started_at: when it starts, not when it was claimed (it may have waited).
            task = self._ready.popleft()
            if task.started_at is None:  # claimed ahead: its attempt counts from now
                task = task.evolve(attempts=task.attempts + 1, started_at=utcnow())
                self._starts.append(task)
                assert self._flush_wanted is not None
                self._flush_wanted.set()
            else:
                task = task.evolve(started_at=utcnow())
            ctx = TaskContext(task.id, task.attempts, task.queue_name, self.worker_id)
            runner = loop.create_task(self._run_task(task, ctx))
            self._running[task.id] = (task, runner, ctx)

    def _release(self, task: Task) -> None:
        """Hand a claimed task back to the queue at once (one claimed ahead and not started
        comes back with the attempts it was claimed with: none spent)."""
        release = _released(task)
        self._unwritten[task.id] = release
        self._completions.append((release, None))
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    async def _idle(self, timeout: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        waiter = asyncio.ensure_future(self.queue.wait_for_tasks(timeout, self._watched))
        stopper = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()

    async def _renew_loop(self) -> None:
        interval = renew_interval(self.lease_timeout)
        while True:
            await asyncio.sleep(interval)
            ready = {t.id for t in self._ready}
            ids = [*self._running, *ready]
            ids += [i for i in self._unwritten if i not in self._running]
            if not ids:
                continue
            try:
                held = await self.queue.renew(self.worker_id, ids, self.lease_timeout)
            except Exception:
                logger.warning("renewing %d leases failed", len(ids), exc_info=True)
                continue
            for task_id in ids:
                entry = self._running.get(task_id)
                if task_id not in held and entry is not None:
                    logger.info("task %s was cancelled or lost its lease; stopping it", task_id)
                    entry[2].cancel()
                    entry[1].cancel(msg="cancelled")
            lost = [t for t in self._ready if t.id not in held and t.id in ready]
            for task in lost:
                # Cancelled or lost before it started: it must not run here.
                logger.info("task %s was cancelled or lost its lease before it started", task.id)
                self._ready.remove(task)
                asyncio.get_running_loop().create_task(self._record_cancel(task))

    async def _maintenance_loop(self) -> None:
        loop = asyncio.get_running_loop()
        cleaned = loop.time()
        pause = _EXPIRY_INTERVAL
        while True:
            await asyncio.sleep(pause)
            began = loop.time()
            try:
                await self._maintenance.expire_overdue()
            except Exception:
                logger.warning("expiring overdue tasks failed", exc_info=True)
            # Bounded cost where listing tasks is slow (a backend that must scan): the sweep
            # takes at most about 5% of the worker's time.
            pause = max(_EXPIRY_INTERVAL, (loop.time() - began) * 20)
            if loop.time() - cleaned >= _MAINTENANCE_INTERVAL:
                cleaned = loop.time()
                await self._maintenance.clean_up()

    async def _dependency_loop(self) -> None:
        wanted = self._dependencies_wanted
        assert wanted is not None
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                self._dependencies_waiting = await self._resolver.resolve() > 0
            except Exception:
                logger.warning("resolving task dependencies failed", exc_info=True)
            wanted.clear()
            # Completions wake this at once; the timer only catches other processes' work, so
            # where a pass is slow it runs less often (at most about 5% of the time).
            pause = max(_DEPENDENCY_INTERVAL, (loop.time() - began) * 20)
            await wait_within(wanted.wait(), pause)

    # --- one task ----------------------------------------------------------------------------

    async def _run_task(self, task: Task, ctx: TaskContext) -> None:
        started = time.perf_counter()
        try:
            outcome = await self._outcome(task, ctx)
        except Exception as exc:
            # Bad stored data or a bug on the way to the outcome: the task fails alone, its slot
            # is freed, and the worker goes on claiming.
            logger.exception("recording the outcome of task %s failed", task.id)
            outcome = self._broken(task, exc)
        finally:
            self._running.pop(task.id, None)
            self._start_ready()
        took = time.perf_counter() - started
        mean = self._mean_run
        if mean is None or took >= _SHORT_TASK:
            # One long task turns claiming ahead off at once; it takes many short ones to turn
            # it on again.
            self._mean_run = max(took, mean or 0.0)
        else:
            self._mean_run = mean + (took - mean) * 0.1
        assert self._wake is not None
        self._wake.set()
        if outcome is not None:
            self._unwritten[task.id] = outcome[0]
            self._completions.append(outcome)
            assert self._flush_wanted is not None
            self._flush_wanted.set()

    async def _outcome(self, task: Task, ctx: TaskContext) -> _Outcome | None:
        if is_stand_in(task):  # a stored task its queue could not read: it will not heal
            return self._final(task, TaskStatus.FAILED, error=task.error)
        now = utcnow()
        if task.expires_at is not None and task.attempts == 1 and task.expires_at <= now:
            return self._final(
                task,
                TaskStatus.EXPIRED,
                error=TaskError(
                    type="TaskExpired",
                    message=f"not started before its TTL ran out at {task.expires_at}",
                ),
            )
        if task.attempts > task.max_attempts:
            return self._final(
                task,
                TaskStatus.FAILED,
                error=TaskError(
                    type="WorkerLost",
                    message=f"attempt {task.attempts - 1} of {task.max_attempts} was lost "
                    "with its worker; "
                    "no attempts left",
                ),
            )
        if task.depends_on:
            try:
                task = await self._with_dependency_results(task)
            except PermanentFailure as exc:
                return self._final(task, TaskStatus.FAILED, error=exc.error)
        events = self._events
        if events.enabled:
            events.emit(
                TaskEvent(
                    task_id=task.id,
                    type=EventType.EXECUTING,
                    timestamp=now,
                    queue_name=task.queue_name,
                    worker_id=self.worker_id,
                    attempt=task.attempts,
                    schedule_id=task.schedule_id,
                )
            )
        started = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            if task.timeout is not None:
                async with asyncio.timeout(task.timeout) as deadline:
                    self._timeouts[task.id] = deadline
                    try:
                        value = await self._execute(task, ctx)
                    finally:
                        del self._timeouts[task.id]
            else:
                value = await self._execute(task, ctx)
        except PermanentFailure as exc:
            # A payload that cannot be decoded or a function that cannot be imported will not
            # heal: no retries.
            return self._final(task, TaskStatus.FAILED, error=exc.error)
        except TimeoutError as exc:
            # Only the task's own timeout is a TaskTimeoutError; a TimeoutError the task raised
            # (a socket's, say) is an ordinary failure.
            failure: BaseException = exc
            if deadline is not None and deadline.expired():
                ctx.cancel()
                failure = TaskTimeoutError(f"task exceeded its timeout of {task.timeout} s")
            return self._failure(task, _error(failure), time.perf_counter() - started)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling() == 0:
                # Raised by the task itself, not a cancel of this run: an ordinary failure.
                return self._failure(task, _error(exc), time.perf_counter() - started)
            return await self._interrupted(task, exc)
        except BaseException as exc:
            # sys.exit(), KeyboardInterrupt, GeneratorExit...: the task's failure; left to
            # propagate they would end the event loop and every worker on it.
            return self._failure(task, _error(exc), time.perf_counter() - started)
        duration = time.perf_counter() - started
        return self._final(task, TaskStatus.SUCCESS, value=value, duration=duration)

    async def _with_dependency_results(self, task: Task) -> Task:
        """The task with its dependencies' results put in its call, where it takes them."""
        assert self.serializer is not None
        call = self._checked_call(task)
        try:
            inputs = self.serializer.call_inputs(call)
        except Exception as exc:
            raise PermanentFailure(_error(exc)) from exc
        if inputs is None:
            return task
        mode, ids = inputs
        if self.result_store is None:
            raise PermanentFailure(
                TaskError(
                    type="DependencyResultMissing",
                    message="this task takes its dependencies' results, "
                    "but the worker has no result store",
                )
            )
        results = await asyncio.gather(*(self._dependency_result(i) for i in ids))
        missing = [i for i, r in zip(ids, results, strict=True) if r is None or not r.ok]
        if missing:
            raise PermanentFailure(
                TaskError(
                    type="DependencyResultMissing",
                    message=f"no successful result of {', '.join(missing)} (expired or deleted)",
                )
            )
        values = [r.value for r in results if r is not None]
        serializer = self.serializer
        try:
            payload = serializer.seal(
                serializer.with_inputs(call, values[0] if mode == "one" else values),
                "task",
                self.queue.project_name,
                task.id,
            )
        except Exception as exc:
            raise PermanentFailure(_error(exc)) from exc
        return task.evolve(payload=payload)

    async def _dependency_result(self, task_id: str) -> TaskResult | None:
        assert self.result_store is not None
        try:
            return await self.result_store.get(task_id)
        except SerializationError as exc:  # corrupt or forged: it will not read better later
            raise PermanentFailure(
                TaskError(
                    type="SerializationError",
                    message=f"the result of dependency {task_id} cannot be read: "
                    f"{_error(exc).message}",
                )
            ) from exc

    async def _interrupted(self, task: Task, exc: asyncio.CancelledError) -> _Outcome | None:
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        reason = exc.args[0] if exc.args else None
        if reason == "release":
            # Shutdown grace ran out: hand the task back at once (the attempt still counts).
            return _released(task), None
        await self._record_cancel(task)
        return None

    async def _record_cancel(self, task: Task) -> None:
        """Record the CANCELLED result and event of a task this worker stopped, where it was
        cancelled (not when its lease was lost to another worker, which owns it now)."""
        try:
            stored = await self.queue.get_task(task.id)
        except Exception:
            logger.warning("reading task %s after it was stopped failed", task.id, exc_info=True)
            return
        if stored is not None and stored.status is TaskStatus.CANCELLED:
            error = TaskError.from_exception(TaskCancelledError("cancelled while running"))
            _, result = self._final(task, TaskStatus.CANCELLED, error=error)
            if result is not None:
                self._store_orphan_result(result)

    def _failure(self, task: Task, error: TaskError, duration: float | None) -> _Outcome:
        if should_retry(task.attempts, task.max_retries):
            delay = retry_delay(task.attempts, task.retry_delay)
            retry = task.evolve(
                status=TaskStatus.RETRYING,
                run_at=utcnow() + timedelta(seconds=delay),
                worker_id=None,
                lease_until=None,
                error=error,
            )
            self._emit(task, EventType.RETRY, error=error, duration=duration)
            return retry, None
        return self._final(task, TaskStatus.FAILED, error=error, duration=duration)

    def _broken(self, task: Task, exc: Exception) -> _Outcome:
        """The outcome of a task whose outcome path raised: retried if its retry settings can
        be read, else FAILED; with or without a result, never none."""
        cause = _error(exc)
        error = TaskError(
            type=cause.type,
            message=f"OmniQ could not record this task's outcome: {cause.message}",
            traceback=cause.traceback,
        )
        with contextlib.suppress(Exception):
            return self._failure(task, error, None)
        with contextlib.suppress(Exception):
            return self._final(task, TaskStatus.FAILED, error=error)
        done = task.evolve(
            status=TaskStatus.FAILED, finished_at=utcnow(), lease_until=None, error=error
        )
        return done, None

    def _final(
        self,
        task: Task,
        status: TaskStatus,
        *,
        value: Any = None,
        error: TaskError | None = None,
        duration: float | None = None,
    ) -> _Outcome:
        """The task ended: its outcome with its result already encoded, so that a value that
        cannot be stored fails this task alone, never the batch of outcomes it is written in."""
        result, event = ending(
            task, status, value=value, error=error, worker_id=self.worker_id, duration=duration
        )
        stored = None
        if self.result_store is not None:
            try:
                stored = result, self.result_store.encode(result)
            except Exception as exc:
                if status is not TaskStatus.SUCCESS:
                    raise
                # The same value would come back next time: FAILED, no retry.
                result, event = ending(
                    task,
                    TaskStatus.FAILED,
                    error=unstorable(value, exc),
                    worker_id=self.worker_id,
                    duration=duration,
                )
                stored = result, self.result_store.encode(result)
        if self._events.enabled:
            self._events.emit(event)
        done = task.evolve(
            status=result.status,
            finished_at=result.finished_at,
            lease_until=None,
            error=result.error,
        )
        return done, stored

    def _emit(
        self,
        task: Task,
        kind: EventType,
        *,
        error: TaskError | None = None,
        duration: float | None = None,
    ) -> None:
        if self._events.enabled:
            self._events.emit(
                TaskEvent(
                    task_id=task.id,
                    type=kind,
                    timestamp=utcnow(),
                    queue_name=task.queue_name,
                    worker_id=self.worker_id,
                    attempt=task.attempts,
                    duration=duration,
                    error=error,
                    schedule_id=task.schedule_id,
                )
            )

    def _store_orphan_result(self, result: tuple[TaskResult, bytes]) -> None:
        self._completions.append((_NO_TASK, result))
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    # --- writing outcomes --------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._flush_wanted is not None and self._flushed is not None
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self._write_starts()
            await self._write_completions()
            self._flushed.set()

    async def _write_starts(self) -> None:
        """Count the attempts of tasks claimed ahead that started (at once, so that a task that
        kills its worker is counted; and before their outcomes, which compare attempts)."""
        while self._starts:
            batch, self._starts = self._starts, []
            try:
                await self.queue.mark_started(self.worker_id, batch)
            except Exception:
                logger.warning(
                    "recording %d task starts failed; retrying", len(batch), exc_info=True
                )
                self._starts[:0] = batch
                await asyncio.sleep(_WRITE_RETRY_DELAY)

    async def _write_completions(self) -> None:
        while self._completions:
            await self._write_starts()  # a task's start before its outcome
            batch, self._completions = self._completions, []
            try:
                await self._write(batch)
            except Exception:
                if len(batch) > 1 and await self._write_each(batch):
                    continue
                logger.warning(
                    "writing %d task outcomes failed; retrying", len(batch), exc_info=True
                )
                self._completions[:0] = batch
                await asyncio.sleep(_WRITE_RETRY_DELAY)
                continue
            self._written(batch)

    async def _write(self, batch: list[_Outcome]) -> None:
        results = [r for _, r in batch if r is not None]
        tasks = [t for t, _ in batch if t is not _NO_TASK]
        # One transaction where both live in one database; else (and for a lone outcome, whose
        # waiter hears of its result sooner so) results first: dying between the two writes
        # re-runs the task, never loses it.
        written = None
        if results and self.result_store is not None:
            if len(batch) > 1:
                written = await self.queue.finish_with_results(
                    self.worker_id, tasks, results, self.result_store
                )
            if written is None:
                await self.result_store.put_encoded(results)
        if written is None:
            await self.queue.finish(self.worker_id, tasks)

    async def _write_each(self, batch: list[_Outcome]) -> bool:
        """After a batch write failed: write its outcomes one by one, so that one the storage
        refuses holds back no other. False if none could be written (the storage is down, not
        an outcome bad): the caller retries them all."""
        refused: list[tuple[_Outcome, Exception]] = []
        landed = False
        for outcome in batch:
            if not landed and len(refused) >= _SPLIT_PROBES:
                return False
            try:
                await self._write([outcome])
            except Exception as exc:
                refused.append((outcome, exc))
            else:
                self._written([outcome])
                landed = True
        if not landed:
            return False
        for outcome, exc in refused:
            self._refused(outcome, exc)
        return True

    def _refused(self, outcome: _Outcome, exc: Exception) -> None:
        """An outcome the storage refused while it took others: a task whose result was refused
        (too large for the backend, say) fails instead, once; anything else is given up and
        the task left to lease recovery, as if this worker had died."""
        task, stored = outcome
        logger.error("the storage refused the outcome of task %s", task.id, exc_info=exc)
        if task is not _NO_TASK and stored is not None and task.id not in self._refused_ids:
            self._refused_ids.add(task.id)
            cause = _error(exc)
            error = TaskError(
                type=cause.type,
                message=f"the task's outcome could not be stored: {cause.message}",
                traceback=cause.traceback,
            )
            try:
                self._completions.append(self._final(task, TaskStatus.FAILED, error=error))
                return
            except Exception:
                logger.exception("recording why task %s failed did not work either", task.id)
        self._refused_ids.discard(task.id)
        self._unwritten.pop(task.id, None)

    def _written(self, batch: list[_Outcome]) -> None:
        tasks = [t for t, _ in batch if t is not _NO_TASK]
        for task in tasks:
            self._unwritten.pop(task.id, None)
            self._refused_ids.discard(task.id)
        self.processed += len(tasks)
        if self._dependencies_waiting and self._dependencies_wanted is not None:
            self._dependencies_wanted.set()

    async def _drain_completions(self) -> None:
        deadline = time.monotonic() + max(self.stop_timeout, 5.0)
        while (self._completions or self._unwritten) and time.monotonic() < deadline:
            await self._write_completions()
            if self._unwritten and not self._completions:
                await asyncio.sleep(0.01)


_NO_TASK = Task(id="", func_name="", payload=b"", created_at=utcnow(), run_at=utcnow())
#: A task's new state (for the queue) with its final result, encoded (for the result store).
_Outcome = tuple[Task, tuple[TaskResult, bytes] | None]


def _released(task: Task) -> Task:
    """A claimed task as it goes back to the queue, due now."""
    return task.evolve(status=TaskStatus.PENDING, worker_id=None, lease_until=None, run_at=utcnow())


def renew_interval(lease_timeout: float) -> float:
    """Seconds between lease renewals: a third of the lease (two renewals may fail before it
    lapses), at most a second (a cancel is noticed within about a second)."""
    return min(lease_timeout / 3, 1.0)


def task_error(exc: BaseException) -> TaskError:
    """The TaskError recorded for an exception (with its traceback)."""
    return _error(exc)


def _error(exc: BaseException) -> TaskError:
    if isinstance(exc, RemoteError):
        return exc.error
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskError.from_exception(exc, tb)


def _positive(field: str, value: Any, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{field} must be a positive number, got {value!r}") from exc
    if not 0 < number < float("inf"):  # also false for NaN, which passes "<= 0"
        raise ConfigError(f"{field} must be a finite number > 0, got {value!r}")
    return number
