"""Task dependencies: WAITING tasks move on when their dependencies end.

A task enqueued with ``depends_on`` is stored WAITING. When every dependency has succeeded it
becomes PENDING (claimable); when one ends FAILED, CANCELLED or EXPIRED (or is gone) it is
CANCELLED, with a CANCELLED result and event, and so are its own dependents, transitively.

Workers run :class:`DependencyResolver` right after they record outcomes (while waiting tasks
exist) and every second otherwise (less often where a pass is slow), so a worker that died
between finishing a dependency and releasing its dependents delays them; it never strands them.
Moves are compare-and-set on the status (WAITING -> ...), so any number of resolvers may run at
once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from omniq.models import Task, TaskError, TaskEvent, TaskStatus, utcnow
from omniq.outcomes import ending

__all__ = ["DependencyResolver"]

logger = logging.getLogger("omniq.dependencies")

_BROKEN = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED)


class DependencyResolver:
    """Releases or cancels WAITING tasks of one queue according to their dependencies."""

    def __init__(
        self,
        queue: Any,
        result_store: Any | None = None,
        emit: Callable[[TaskEvent], None] | None = None,
        *,
        batch: int = 500,
    ) -> None:
        self.queue = queue
        self.result_store = result_store
        self.emit = emit
        self.batch = batch

    async def resolve(self) -> int:
        """One pass over (up to ``batch``) waiting tasks, repeated while cancellations cascade;
        returns how many tasks were still waiting at the end of the last pass."""
        waiting: list[Task] = []
        for _ in range(20):  # bounded: a deeper cascade continues on the next call
            waiting = await self.queue.list_tasks(status=TaskStatus.WAITING, limit=self.batch)
            if not waiting:
                return 0
            released, cancelled = await self._settle(waiting)
            if not cancelled:
                return len(waiting) - released
        return len(waiting)

    async def _settle(self, waiting: list[Task]) -> tuple[int, int]:
        wanted = sorted({d for t in waiting for d in t.depends_on})
        found = await asyncio.gather(*(self.queue.get_task(d) for d in wanted))
        status = {
            d: (f.status if f is not None else None) for d, f in zip(wanted, found, strict=True)
        }
        released = cancelled = 0
        for task in waiting:
            states = [status[d] for d in task.depends_on]
            broken = next(
                (
                    d
                    for d, s in zip(task.depends_on, states, strict=True)
                    if s is None or s in _BROKEN
                ),
                None,
            )
            if broken is not None:
                state = status[broken]
                why = "is gone" if state is None else f"ended {state.value}"
                if await self._cancel(task, f"dependency {broken} {why}"):
                    cancelled += 1
            elif all(s is TaskStatus.SUCCESS for s in states):
                moved = await self.queue.transition(
                    task.id, (TaskStatus.WAITING,), status=TaskStatus.PENDING
                )
                released += moved is not None
        return released, cancelled

    async def _cancel(self, task: Task, reason: str) -> bool:
        now = utcnow()
        error = TaskError(type="DependencyFailed", message=reason)
        moved = await self.queue.transition(
            task.id,
            (TaskStatus.WAITING,),
            status=TaskStatus.CANCELLED,
            finished_at=now,
            error=error,
        )
        if moved is None:
            return False
        logger.info("task %s cancelled: %s", task.id, reason)
        await record_ending(self.result_store, self.emit, task, TaskStatus.CANCELLED, error)
        return True


async def record_ending(
    result_store: Any | None,
    emit: Callable[[TaskEvent], None] | None,
    task: Task,
    status: TaskStatus,
    error: TaskError,
) -> None:
    """Store the result and emit the event of a task that ended without running (cancelled by
    a dependency, expired): waiters on its result get an answer."""
    result, event = ending(task, status, error=error)
    if result_store is not None:
        try:
            await result_store.put(result)
        except Exception:
            logger.warning(
                "storing the %s result of %s failed", status.value, task.id, exc_info=True
            )
    if emit is not None:
        emit(event)
