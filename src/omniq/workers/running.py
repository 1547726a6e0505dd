"""One claimed task, from its checks to its outcome: the run itself is the worker type's
:meth:`~omniq.workers.base.BaseWorker._execute` (the event loop, threads, processes, greenlets)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omniq._corrupt import is_stand_in
from omniq.context import TaskContext
from omniq.errors import SerializationError, TaskCancelledError, TaskTimeoutError
from omniq.models import EventType, Task, TaskError, TaskResult, TaskStatus, utcnow
from omniq.workers.endings import Endings, Outcome, released
from omniq.workers.failures import PermanentFailure, task_error

if TYPE_CHECKING:
    from omniq.workers.base import BaseWorker

__all__ = ["TaskRunner"]

logger = logging.getLogger("omniq.worker")


class TaskRunner:
    """Runs a worker's claimed tasks to their outcomes (None: nothing to write)."""

    def __init__(self, worker: BaseWorker, endings: Endings) -> None:
        self.worker = worker
        self.endings = endings

    async def outcome(self, task: Task, ctx: TaskContext) -> Outcome | None:
        """Run the task (unless it cannot or must not run) and return its outcome."""
        now = utcnow()
        ended = self._ended_before_start(task, now)
        if ended is not None:
            return ended
        if task.depends_on:
            try:
                task = await self._with_dependency_results(task)
            except PermanentFailure as exc:
                return self.endings.final(task, TaskStatus.FAILED, error=exc.error)
        self.endings.emit(task, EventType.EXECUTING, at=now)
        return await self._run(task, ctx)

    def _ended_before_start(self, task: Task, now: datetime) -> Outcome | None:
        """The outcome of a task that must not run: unreadable, expired, or out of attempts."""
        final = self.endings.final
        if is_stand_in(task):  # a stored task its queue could not read: it will not heal
            return final(task, TaskStatus.FAILED, error=task.error)
        if task.expires_at is not None and task.attempts == 1 and task.expires_at <= now:
            return final(
                task,
                TaskStatus.EXPIRED,
                error=TaskError(
                    type="TaskExpired",
                    message=f"not started before its TTL ran out at {task.expires_at}",
                ),
            )
        if task.attempts > task.max_attempts:
            return final(
                task,
                TaskStatus.FAILED,
                error=TaskError(
                    type="WorkerLost",
                    message=f"attempt {task.attempts - 1} of {task.max_attempts} was lost "
                    "with its worker; "
                    "no attempts left",
                ),
            )
        return None

    async def _run(self, task: Task, ctx: TaskContext) -> Outcome | None:
        started = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            if task.timeout is not None:
                async with asyncio.timeout(task.timeout) as deadline:
                    value = await self._execute_within(task, ctx, deadline)
            else:
                value = await self.worker._execute(task, ctx)
        except PermanentFailure as exc:
            # A payload that cannot be decoded or a function that cannot be imported will not
            # heal: no retries.
            return self.endings.final(task, TaskStatus.FAILED, error=exc.error)
        except TimeoutError as exc:
            # Only the task's own timeout is a TaskTimeoutError; a TimeoutError the task raised
            # (a socket's, say) is an ordinary failure.
            failure: BaseException = exc
            if deadline is not None and deadline.expired():
                ctx.cancel()
                failure = TaskTimeoutError(f"task exceeded its timeout of {task.timeout} s")
            return self.endings.failure(task, task_error(failure), time.perf_counter() - started)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling() == 0:
                # Raised by the task itself, not a cancel of this run: an ordinary failure.
                return self.endings.failure(task, task_error(exc), time.perf_counter() - started)
            return await self._interrupted(task, exc)
        except BaseException as exc:
            # sys.exit(), KeyboardInterrupt, GeneratorExit...: the task's failure; left to
            # propagate they would end the event loop and every worker on it.
            return self.endings.failure(task, task_error(exc), time.perf_counter() - started)
        duration = time.perf_counter() - started
        return self.endings.final(task, TaskStatus.SUCCESS, value=value, duration=duration)

    async def _execute_within(self, task: Task, ctx: TaskContext, deadline: asyncio.Timeout) -> Any:
        """Run the task with its timeout scope known to the worker type (which may start the
        task later and must give it the rest of the time only)."""
        timeouts = self.worker._timeouts
        timeouts[task.id] = deadline
        try:
            return await self.worker._execute(task, ctx)
        finally:
            del timeouts[task.id]

    async def _with_dependency_results(self, task: Task) -> Task:
        """The task with its dependencies' results put in its call, where it takes them."""
        worker = self.worker
        serializer = worker.serializer
        assert serializer is not None
        call = worker._checked_call(task)
        try:
            inputs = serializer.call_inputs(call)
        except Exception as exc:
            raise PermanentFailure(task_error(exc)) from exc
        if inputs is None:
            return task
        mode, ids = inputs
        if worker.result_store is None:
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
        try:
            payload = serializer.seal(
                serializer.with_inputs(call, values[0] if mode == "one" else values),
                "task",
                worker.queue.project_name,
                task.id,
            )
        except Exception as exc:
            raise PermanentFailure(task_error(exc)) from exc
        return task.evolve(payload=payload)

    async def _dependency_result(self, task_id: str) -> TaskResult | None:
        result_store = self.worker.result_store
        assert result_store is not None
        try:
            return await result_store.get(task_id)
        except SerializationError as exc:  # corrupt or forged: it will not read better later
            raise PermanentFailure(
                TaskError(
                    type="SerializationError",
                    message=f"the result of dependency {task_id} cannot be read: "
                    f"{task_error(exc).message}",
                )
            ) from exc

    async def _interrupted(self, task: Task, exc: asyncio.CancelledError) -> Outcome | None:
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        reason = exc.args[0] if exc.args else None
        if reason == "release":
            # Shutdown grace ran out: hand the task back at once (the attempt still counts).
            return released(task), None
        await self.record_cancel(task)
        return None

    async def record_cancel(self, task: Task) -> None:
        """Record the CANCELLED result and event of a task this worker stopped, where it was
        cancelled (not when its lease was lost to another worker, which owns it now)."""
        try:
            stored = await self.worker.queue.get_task(task.id)
        except Exception:
            logger.warning("reading task %s after it was stopped failed", task.id, exc_info=True)
            return
        if stored is not None and stored.status is TaskStatus.CANCELLED:
            error = TaskError.from_exception(TaskCancelledError("cancelled while running"))
            _, result = self.endings.final(task, TaskStatus.CANCELLED, error=error)
            if result is not None:
                self.worker._recorder.store_result(result)
