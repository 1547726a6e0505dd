"""Claiming: the claim loop, claim-ahead sizing, and starting claimed tasks in claim order.

Claiming ahead: while tasks are short (a mean run under ``_SHORT_TASK``), a claim's round trip
costs more than the tasks it brings, so the worker claims beyond its free slots as many tasks as
its slots start within ``_AHEAD_HORIZON`` (at the mean run time; at most ``_AHEAD_MAX *
max_workers``): each claim brings more tasks, and the next is in flight while they run.
They wait in ``ready`` (leased and renewed like running ones) and start in claim order the
moment a slot frees; claims never overlap, so strict queue priority holds. A graceful stop runs
them too, within the grace period; SIGKILL leaves them to lease recovery like running ones.
Only the tasks a claim starts at once count an attempt there (``start=`` the free slots); one
claimed ahead counts when it starts, written by the flush loop before its outcome (``finish``
compares attempts). So a worker killed while holding tasks ahead costs them no attempt, and a
task that kills its worker still runs out of attempts: taking a task back from a lapsed lease
always counts one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from omniq._tasks import wait_within
from omniq.context import TaskContext
from omniq.models import Task, utcnow

if TYPE_CHECKING:
    from omniq.workers.base import BaseWorker

__all__ = ["Claimer"]

logger = logging.getLogger("omniq.worker")

_CLAIM_GATHER = 0.002  # seconds a busy worker may wait to claim for several free slots at once
_SHORT_TASK = 0.05  # seconds: below this mean run time, the worker claims ahead (see above)
_AHEAD_HORIZON = 0.01  # seconds: a task claimed ahead waits about this long for its slot
_AHEAD_MAX = 4  # claiming ahead, a worker holds at most this many times max_workers tasks more


class Claimer:
    """Claims tasks for a worker's free slots (and ahead of them) and starts them."""

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker
        self.ready: deque[Task] = deque()  # claimed ahead, not started (claim order)
        self.mean_run: float | None = None  # moving average of task run times (seconds)
        self._wake: asyncio.Event | None = None

    def open(self) -> None:
        """Prepare for a run of :meth:`run` on the running loop."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look again at once: a slot freed, or the worker stops."""
        assert self._wake is not None
        self._wake.set()

    def ran(self, took: float) -> None:
        """A task ran ``took`` seconds and freed its slot: update the mean run time that sizes
        claims, and look again."""
        mean = self.mean_run
        if mean is None or took >= _SHORT_TASK:
            # One long task turns claiming ahead off at once; it takes many short ones to turn
            # it on again.
            self.mean_run = max(took, mean or 0.0)
        else:
            self.mean_run = mean + (took - mean) * 0.1
        assert self._wake is not None
        self._wake.set()

    async def run(self) -> None:
        """The claim loop, until the worker stops."""
        while not self.worker._stopping:
            try:
                await self._claim_until_stopped()
            except Exception:
                # A storage error while waiting must not end claiming silently.
                logger.exception("claim loop failed; restarting it")
                await asyncio.sleep(self.worker.poll_interval)

    def _claiming_ahead(self) -> bool:
        # Not before a task has finished: a fresh worker must not hoard long tasks.
        return self.worker.claim_ahead and self.mean_run is not None and self.mean_run < _SHORT_TASK

    def _claimable(self) -> int:
        """How many tasks a claim may ask for now."""
        slots = self.worker.max_workers
        ahead = 0
        if self._claiming_ahead():
            assert self.mean_run is not None
            per_slot = _AHEAD_HORIZON / max(self.mean_run, 1e-6)
            ahead = min(_AHEAD_MAX * slots, max(1, int(slots * per_slot)))
        return slots + ahead - len(self.worker._running) - len(self.ready)

    async def _claim_until_stopped(self) -> None:
        worker = self.worker
        batch = max(1, worker.max_workers // 2)
        while not worker._stopping:
            free = self._claimable()
            if free <= 0:
                await self._woken()
                continue
            if free < batch and worker._running:
                free = await self._gather_slots(free, batch)
                if worker._stopping:
                    break
                if free <= 0:
                    continue
            tasks = await self._claim(free)
            if not tasks:
                await self._idle(worker.poll_interval)
                continue
            self.ready.extend(tasks)
            self.start_ready()

    async def _woken(self) -> None:
        assert self._wake is not None
        self._wake.clear()
        await self._wake.wait()

    async def _gather_slots(self, free: int, batch: int) -> int:
        """Let a few more slots free up so one claim serves several tasks (claims are the
        costliest storage call per task); bounded by _CLAIM_GATHER so slow tasks lose nothing.
        Returns how many tasks a claim may ask for then."""
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLAIM_GATHER
        while free < batch and (remaining := deadline - loop.time()) > 0:
            wake.clear()
            if not await wait_within(wake.wait(), remaining):
                break
            free = self._claimable()
        return free

    async def _claim(self, limit: int) -> list[Task] | None:
        worker = self.worker
        try:
            return await worker.queue.claim(
                worker.worker_id,
                queues=worker.queues,
                limit=limit,
                lease_timeout=worker.lease_timeout,
                start=worker.max_workers - len(worker._running) - len(self.ready),
            )
        except Exception:
            logger.exception("claiming tasks failed; retrying")
            return None

    def start_ready(self) -> None:
        """Start tasks claimed ahead, in claim order, while slots are free."""
        worker = self.worker
        loop = asyncio.get_running_loop()
        while self.ready and len(worker._running) < worker.max_workers:
            # started_at: when it starts, not when it was claimed (it may have waited).
            task = self.ready.popleft()
            if task.started_at is None:  # claimed ahead: its attempt counts from now
                task = task.evolve(attempts=task.attempts + 1, started_at=utcnow())
                worker._recorder.started(task)
            else:
                task = task.evolve(started_at=utcnow())
            ctx = TaskContext(task.id, task.attempts, task.queue_name, worker.worker_id)
            runner = loop.create_task(worker._run_task(task, ctx))
            worker._running[task.id] = (task, runner, ctx)

    async def _idle(self, timeout: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        waiter = asyncio.ensure_future(
            self.worker.queue.wait_for_tasks(timeout, self.worker._watched)
        )
        stopper = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
