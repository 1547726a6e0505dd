"""Writing outcomes: start marks, then results, then statuses, in batches, retried until stored.

Crash reasoning: a claimed task is leased to its worker. Its result is written before the task's
final status; if the process dies in between, the lease lapses, the task runs again (at least
once), and the result is overwritten. A task is never claimed by another worker while its lease
is alive, because leases are renewed every third of ``lease_timeout`` while the task runs and
until its outcome is written (the ``unwritten`` tasks here).

Where the queue and the result storage live in one database (they report the same
``database``), the backend writes a batch's results and statuses in one transaction instead
(:meth:`~omniq.queue.base.AsyncTaskQueue.record_outcomes`): the same promise, one commit.

A batch the storage refuses is split: its outcomes are written one by one, so that one refused
outcome (a result too large for the backend, say) holds back no other; when the first few of
them all fail, the storage is down and the whole batch is retried instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from omniq.models import Task, TaskError, TaskResult, TaskStatus
from omniq.queue.base import AsyncTaskQueue
from omniq.storage.base import AsyncResultStorage
from omniq.workers.endings import NO_TASK, Endings, Outcome, released
from omniq.workers.failures import task_error

__all__ = ["OneTransaction", "Recorder", "SeparateWrites", "outcome_writer"]

logger = logging.getLogger("omniq.worker")

_WRITE_RETRY_DELAY = 0.5
_SPLIT_PROBES = 3  # outcomes of a refused batch tried alone before the storage is deemed down

Encoded = Sequence[tuple[TaskResult, bytes]]


class SeparateWrites:
    """Results first, then statuses: dying between the two writes re-runs a task, never
    loses it."""

    def __init__(self, queue: Any, result_store: Any | None) -> None:
        self.queue = queue
        self.result_store = result_store

    async def record_outcomes(
        self, worker_id: str, tasks: Sequence[Task], results: Encoded
    ) -> set[str] | None:
        """Store ``results``, then write the outcomes of ``tasks``; the ids written (None: a
        queue that does not say)."""
        if results and self.result_store is not None:
            await self.result_store.put_encoded(results)
        return await self.queue.finish(worker_id, tasks)


class OneTransaction(SeparateWrites):
    """Results and statuses in one transaction of the backend (both in one database)."""

    async def record_outcomes(
        self, worker_id: str, tasks: Sequence[Task], results: Encoded
    ) -> set[str] | None:
        """Store ``results`` and write the outcomes of ``tasks`` in one transaction; the ids
        written."""
        if not results or (len(tasks) < 2 and len(results) < 2):
            # A lone outcome goes the separate way: its waiter hears of its result sooner so.
            return await super().record_outcomes(worker_id, tasks, results)
        return await self.queue.record_outcomes(worker_id, tasks, results, self.result_store)


def outcome_writer(queue: Any, result_store: Any | None) -> SeparateWrites:
    """How a worker writes outcomes, chosen once: in one transaction where the queue and the
    result storage are the contract's (not stand-ins forwarding to them) and report the same
    database, else results first, then statuses."""
    if (
        isinstance(queue, AsyncTaskQueue)
        and isinstance(result_store, AsyncResultStorage)
        and queue.database is not None
        and queue.database == result_store.database
    ):
        return OneTransaction(queue, result_store)
    return SeparateWrites(queue, result_store)


class Recorder:
    """A worker's writes after claiming: start marks and outcomes, from one flush loop."""

    def __init__(
        self,
        worker_id: str,
        queue: Any,
        result_store: Any | None,
        endings: Endings,
        written: Callable[[int], None],
    ) -> None:
        """``written``: called with the number of task outcomes each successful write stored."""
        self.worker_id = worker_id
        self.queue = queue
        self.endings = endings
        self.writer = outcome_writer(queue, result_store)
        self._on_written = written
        #: Tasks whose outcome is not stored yet (their leases are renewed until it is).
        self.unwritten: dict[str, Task] = {}
        self._completions: list[Outcome] = []
        self._refused_ids: set[str] = set()  # outcomes the storage refused once (_refused)
        self._starts: list[Task] = []  # tasks claimed ahead that started, attempt not written
        self._wanted: asyncio.Event | None = None

    @property
    def pending(self) -> bool:
        """Whether outcomes wait to be written."""
        return bool(self._completions or self.unwritten)

    def open(self) -> None:
        """Prepare for a run of :meth:`run` on the running loop."""
        self._wanted = asyncio.Event()

    def started(self, task: Task) -> None:
        """A task claimed ahead started: write its attempt soon."""
        self._starts.append(task)
        self._want()

    def add(self, outcome: Outcome) -> None:
        """A task ended: write its outcome soon."""
        self.unwritten[outcome[0].id] = outcome[0]
        self._completions.append(outcome)
        assert self._wanted is not None
        self._wanted.set()

    def release(self, task: Task) -> None:
        """Hand a claimed task back to the queue at once (one claimed ahead and not started
        comes back with the attempts it was claimed with: none spent)."""
        self.add((released(task), None))

    def store_result(self, result: tuple[TaskResult, bytes]) -> None:
        """Store a result without a task outcome (the task is final already)."""
        self._completions.append((NO_TASK, result))
        self._want()

    def _want(self) -> None:
        assert self._wanted is not None
        self._wanted.set()

    async def run(self) -> None:
        """The flush loop: write whatever has come since the last write."""
        wanted = self._wanted
        assert wanted is not None
        while True:
            await wanted.wait()
            wanted.clear()
            await self._write_starts()
            await self._write_completions()

    async def drain(self, timeout: float) -> None:
        """Write every outcome still waiting, for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await self._write_completions()
            if self.unwritten and not self._completions:
                await asyncio.sleep(0.01)

    async def _write_starts(self) -> None:
        """Count the attempts of tasks claimed ahead that started (at once, so that a task that
        kills its worker is counted; and before their outcomes, which compare attempts).

        Writes the starts pending now, not those that come meanwhile: while tasks keep starting,
        looping until none is pending would hold back every outcome (and its result) until the
        worker runs out of tasks."""
        while self._starts:
            batch, self._starts = self._starts, []
            try:
                marked = await self.queue.mark_started(self.worker_id, batch)
            except Exception:
                logger.warning(
                    "recording %d task starts failed; retrying", len(batch), exc_info=True
                )
                self._starts[:0] = batch
                await asyncio.sleep(_WRITE_RETRY_DELAY)
                continue
            for task in _left_out(batch, marked):
                # Not this worker's claim ahead any more: the task was cancelled, or its lease
                # lapsed and another worker took it. Its outcome will be refused too; the renew
                # loop stops it.
                logger.warning(
                    "the start of task %s was not recorded: it was cancelled or its lease was lost",
                    task.id,
                )
            return

    async def _write_completions(self) -> None:
        while self._completions:
            # Taken before the starts are written: each of these tasks had its start queued
            # before it ended, so the write below covers it (a start before its outcome).
            batch, self._completions = self._completions, []
            await self._write_starts()
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

    async def _write(self, batch: list[Outcome]) -> None:
        results = [r for _, r in batch if r is not None]
        tasks = [t for t, _ in batch if t is not NO_TASK]
        written = await self.writer.record_outcomes(self.worker_id, tasks, results)
        for task in _left_out(tasks, written):
            # The compare-and-set refused it: the task is no longer this worker's claim at this
            # attempt (cancelled, or taken over after its lease lapsed), so its outcome must not
            # be written, nor retried. Said aloud: were it still held, it would run again once
            # its lease lapsed.
            logger.warning(
                "the outcome of task %s (%s, attempt %d) was not written: it was cancelled or "
                "its lease was lost",
                task.id,
                task.status.value,
                task.attempts,
            )

    async def _write_each(self, batch: list[Outcome]) -> bool:
        """After a batch write failed: write its outcomes one by one. False if none could be
        written (the storage is down, not an outcome bad): the caller retries them all."""
        refused: list[tuple[Outcome, Exception]] = []
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
        for outcome, error in refused:
            self._refused(outcome, error)
        return True

    def _refused(self, outcome: Outcome, exc: Exception) -> None:
        """An outcome the storage refused while it took others: a task whose result was refused
        fails instead, once; anything else is given up and the task left to lease recovery, as
        if this worker had died."""
        task, stored = outcome
        logger.error("the storage refused the outcome of task %s", task.id, exc_info=exc)
        if task is not NO_TASK and stored is not None and task.id not in self._refused_ids:
            self._refused_ids.add(task.id)
            cause = task_error(exc)
            error = TaskError(
                type=cause.type,
                message=f"the task's outcome could not be stored: {cause.message}",
                traceback=cause.traceback,
            )
            try:
                self._completions.append(self.endings.final(task, TaskStatus.FAILED, error=error))
                return
            except Exception:
                logger.exception("recording why task %s failed did not work either", task.id)
        self._refused_ids.discard(task.id)
        self.unwritten.pop(task.id, None)

    def _written(self, batch: list[Outcome]) -> None:
        tasks = [t for t, _ in batch if t is not NO_TASK]
        for task in tasks:
            self.unwritten.pop(task.id, None)
            self._refused_ids.discard(task.id)
        self._on_written(len(tasks))


def _left_out(tasks: Sequence[Task], written: set[str] | None) -> list[Task]:
    """The tasks whose write the queue refused (none where it does not say)."""
    if written is None:
        return []
    return [task for task in tasks if task.id not in written]
