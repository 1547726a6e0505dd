"""Run everything a task queue holds to completion, now: the engine of ``drain()``.

Pure policy over the public queue API: tasks that are due later (``run_at``/``run_in``, retries
waiting out their backoff) are made due at once with a compare-and-set on their status, and a
started worker takes them; dependents are released by the worker as their dependencies end.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from omniq.models import CLAIMABLE, FINAL, Task, TaskResult, TaskStatus, utcnow

__all__ = ["drain_queue", "fast_forward", "final_ids"]

#: Statuses of tasks that drain() waits for.
LIVE = (*CLAIMABLE, TaskStatus.WAITING, TaskStatus.RUNNING)
#: How often the queue is looked at while a worker runs the tasks (as ``BaseWorker.join``).
_POLL = 0.005


async def _ids(queue: Any, statuses: tuple[TaskStatus, ...]) -> list[str]:
    """Ids of the tasks in these statuses, oldest first."""
    tasks: list[Task] = []
    for status in statuses:
        count = await queue.count(status=status)
        if count:
            tasks.extend(await queue.list_tasks(status=status, limit=count))
    return [t.id for t in sorted(tasks, key=lambda t: t.created_at)]


async def final_ids(queue: Any) -> set[str]:
    """Ids of the tasks that have ended."""
    return set(await _ids(queue, FINAL))


async def fast_forward(queue: Any) -> int:
    """Make every pending or retrying task that is due later due now; returns how many."""
    now, moved = utcnow(), 0
    for status in CLAIMABLE:
        count = await queue.count(status=status)
        if not count:
            continue
        for task in await queue.list_tasks(status=status, limit=count):
            # Compare-and-set on the status: a task claimed meanwhile is left alone.
            if task.run_at > now and await queue.transition(task.id, (status,), run_at=now):
                moved += 1
    return moved


async def drain_queue(
    queue: Any, result_store: Any | None, worker: Any, timeout: float
) -> dict[str, TaskResult]:
    """With ``worker`` started on ``queue``: fast-forward and wait until no task is live; the
    results of the tasks that ended meanwhile, in enqueue order."""
    before = await final_ids(queue)
    deadline = time.monotonic() + timeout
    worker.watch_dependencies()
    while True:
        await fast_forward(queue)
        live = await _ids(queue, LIVE)
        if not live:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"drain: {len(live)} tasks still unfinished after {timeout} s: {live[:5]}"
            )
        await asyncio.sleep(_POLL)
    await worker.join(timeout)  # outcomes and their events written
    ended = [task_id for task_id in await _ids(queue, FINAL) if task_id not in before]
    results: dict[str, TaskResult] = {}
    if result_store is not None:
        for task_id in ended:
            result = await result_store.get(task_id)
            if result is not None:
                results[task_id] = result
    return results
