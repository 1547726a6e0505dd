"""A worker's background duties besides claiming and writing: lease renewal, maintenance
(expiring overdue tasks, deleting old results and events), and releasing dependent tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from omniq._tasks import wait_within

if TYPE_CHECKING:
    from omniq.workers.base import BaseWorker

__all__ = ["Housekeeping", "renew_interval"]

logger = logging.getLogger("omniq.worker")

_MAINTENANCE_INTERVAL = 60.0  # seconds between deletions of old results and events
_EXPIRY_INTERVAL = 5.0  # seconds between looks for tasks whose TTL passed
_DEPENDENCY_INTERVAL = 1.0  # longest wait between looks at WAITING tasks


def renew_interval(lease_timeout: float) -> float:
    """Seconds between lease renewals: a third of the lease (two renewals may fail before it
    lapses), at most a second (a cancel is noticed within about a second)."""
    return min(lease_timeout / 3, 1.0)


class Housekeeping:
    """The renew, maintenance and dependency loops of a worker."""

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker
        self._dependencies_waiting = True  # until a look says otherwise
        self._dependencies_wanted: asyncio.Event | None = None

    def open(self) -> None:
        """Prepare for a run of the loops on the running loop."""
        self._dependencies_wanted = asyncio.Event()

    def watch_dependencies(self) -> None:
        """Look at WAITING tasks now and after every recorded outcome."""
        self._dependencies_waiting = True
        self.outcomes_written()

    def outcomes_written(self) -> None:
        """Outcomes were stored: look at WAITING tasks at once, if any are known to wait."""
        if self._dependencies_waiting and self._dependencies_wanted is not None:
            self._dependencies_wanted.set()

    async def renew_loop(self) -> None:
        """Extend the leases of tasks running, claimed ahead, or with unwritten outcomes; stop
        those whose lease was lost (cancelled, or taken back after a lapse)."""
        worker = self.worker
        interval = renew_interval(worker.lease_timeout)
        while True:
            await asyncio.sleep(interval)
            ready = {t.id for t in worker._ready}
            ids = [*worker._running, *ready]
            ids += [i for i in worker._recorder.unwritten if i not in worker._running]
            if not ids:
                continue
            try:
                held = await worker.queue.renew(worker.worker_id, ids, worker.lease_timeout)
            except Exception:
                logger.warning("renewing %d leases failed", len(ids), exc_info=True)
                continue
            self._stop_lost(ids, held, ready)

    def _stop_lost(self, ids: list[str], held: set[str], ready: set[str]) -> None:
        worker = self.worker
        for task_id in ids:
            entry = worker._running.get(task_id)
            if task_id not in held and entry is not None:
                logger.info("task %s was cancelled or lost its lease; stopping it", task_id)
                entry[2].cancel()
                entry[1].cancel(msg="cancelled")
        lost = [t for t in worker._ready if t.id not in held and t.id in ready]
        for task in lost:
            # Cancelled or lost before it started: it must not run here.
            logger.info("task %s was cancelled or lost its lease before it started", task.id)
            worker._ready.remove(task)
            asyncio.get_running_loop().create_task(worker._runner.record_cancel(task))

    async def maintenance_loop(self) -> None:
        """Expire overdue tasks every few seconds; delete old results and events every minute."""
        maintenance = self.worker._maintenance
        loop = asyncio.get_running_loop()
        cleaned = loop.time()
        pause = _EXPIRY_INTERVAL
        while True:
            await asyncio.sleep(pause)
            began = loop.time()
            try:
                await maintenance.expire_overdue()
            except Exception:
                logger.warning("expiring overdue tasks failed", exc_info=True)
            # Bounded cost where listing tasks is slow (a backend that must scan): the sweep
            # takes at most about 5% of the worker's time.
            pause = max(_EXPIRY_INTERVAL, (loop.time() - began) * 20)
            if loop.time() - cleaned >= _MAINTENANCE_INTERVAL:
                cleaned = loop.time()
                await maintenance.clean_up()

    async def dependency_loop(self) -> None:
        """Release or cancel WAITING tasks whose dependencies ended."""
        wanted = self._dependencies_wanted
        assert wanted is not None
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                self._dependencies_waiting = await self.worker._resolver.resolve() > 0
            except Exception:
                logger.warning("resolving task dependencies failed", exc_info=True)
            wanted.clear()
            # Completions wake this at once; the timer only catches other processes' work, so
            # where a pass is slow it runs less often (at most about 5% of the time).
            pause = max(_DEPENDENCY_INTERVAL, (loop.time() - began) * 20)
            await wait_within(wanted.wait(), pause)
