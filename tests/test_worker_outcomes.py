"""The worker's outcome path on the memory backend, where a test can make storage misbehave:
a bad task or a refused outcome fails only itself (issue 14, items 8, 9, 11)."""

from __future__ import annotations

from typing import Any

import pytest
import taskfns
from conftest import wait_until

from omniq import OmniQ, TaskStatus
from omniq.models import Task, TaskResult, utcnow
from omniq.queue import AsyncMemoryTaskQueue, MemoryTaskQueue
from omniq.storage import AsyncMemoryResultStorage, MemoryEventStorage, MemoryResultStorage
from omniq.workers import AsyncThreadPoolWorker

TOO_BIG = "too big for this storage"


class _RefusingResults(AsyncMemoryResultStorage):
    """Refuses every write that holds a result of value TOO_BIG (a backend's size limit)."""

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        if any(result.value == TOO_BIG for result, _ in results):
            raise OSError("maximum payload exceeded")
        await super()._put_many(results)


async def test_an_outcome_the_storage_refuses_holds_back_no_other() -> None:
    queue, results = AsyncMemoryTaskQueue(), _RefusingResults()
    refused = await queue.enqueue(taskfns.add, args=(TOO_BIG, ""))
    good = [await queue.enqueue(taskfns.add, args=(i, i)) for i in range(6)]
    worker = AsyncThreadPoolWorker(
        queue=queue, result_store=results, max_workers=8, poll_interval=0.05, stop_timeout=5
    )
    async with worker:
        for i, task_id in enumerate(good):
            assert (await results.get(task_id, wait=True, timeout=10)).unwrap() == 2 * i
        failed = await results.get(refused, wait=True, timeout=10)
        await worker.join(timeout=10)
    assert failed.status is TaskStatus.FAILED and failed.error.type == "OSError"
    assert "could not be stored" in failed.error.message
    assert (await queue.get_task(refused)).status is TaskStatus.FAILED


class _DownThenUp(AsyncMemoryResultStorage):
    """Refuses every write until ``up`` is set (a storage outage)."""

    up = False
    refusals = 0

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        if not self.up:
            self.refusals += 1
            raise OSError("connection refused")
        await super()._put_many(results)


async def test_an_outage_turns_no_outcome_into_a_failure() -> None:
    queue, results = AsyncMemoryTaskQueue(), _DownThenUp()
    ids = [await queue.enqueue(taskfns.add, args=(i, 1)) for i in range(6)]
    worker = AsyncThreadPoolWorker(
        queue=queue, result_store=results, max_workers=8, poll_interval=0.05
    )
    async with worker:
        await wait_until(lambda: results.refusals >= 4)
        results.up = True
        found = [await results.get(i, wait=True, timeout=10) for i in ids]
    assert [r.unwrap() for r in found] == [i + 1 for i in range(6)]


class _LosingMarks(AsyncMemoryTaskQueue):
    """Writes no start mark (as the PostgreSQL mark did when a renewal held its row)."""

    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        return []


async def test_a_start_or_an_outcome_the_queue_refuses_is_said_aloud(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queue's compare-and-set refusing a start mark or an outcome is right where the task
    is no longer the worker's, but never silent: a refused outcome leaves its task to run again
    once its lease lapses."""
    queue = _LosingMarks()
    ids = [await queue.enqueue(taskfns.add, args=(i, 1)) for i in range(40)]
    worker = AsyncThreadPoolWorker(queue=queue, max_workers=1, poll_interval=0.05)
    with caplog.at_level("WARNING", logger="omniq.worker"):
        async with worker:

            async def all_ran() -> bool:
                return (
                    await queue.count(status=TaskStatus.RUNNING)
                    + await queue.count(status=TaskStatus.SUCCESS)
                    == len(ids)
                    and not worker._recorder.pending
                )

            await wait_until(all_ran)
    unmarked = [r for r in caplog.records if "was not recorded" in r.getMessage()]
    unwritten = [r for r in caplog.records if "was not written" in r.getMessage()]
    assert unmarked and unwritten  # claimed ahead once the first task ran: marks were lost
    stuck = {t.id for t in await queue.list_tasks(status=TaskStatus.RUNNING, limit=100)}
    assert stuck == {i for i in ids if any(i in r.getMessage() for r in unwritten)}


async def test_a_stored_row_with_a_non_integer_max_retries_fails_alone() -> None:
    queue, results = AsyncMemoryTaskQueue(), AsyncMemoryResultStorage()
    now = utcnow()
    bad = Task(
        id="bad-row",
        func_name="taskfns:add",
        payload=queue.serializer.encode_call(taskfns.add, (1, 2)),
        created_at=now,
        run_at=now,
        max_retries="three",  # type: ignore[arg-type] - as a corrupt stored row holds it
    )
    await queue._insert([bad])
    good = await queue.enqueue(taskfns.add, args=(2, 2))
    async with AsyncThreadPoolWorker(queue=queue, result_store=results, poll_interval=0.05):
        result = await results.get(bad.id, wait=True, timeout=10)
        assert (await results.get(good, wait=True, timeout=10)).unwrap() == 4
    assert result.status is TaskStatus.FAILED
    assert "could not record this task's outcome" in result.error.message


@pytest.mark.parametrize("worker", ["thread", "async"])
def test_sys_exit_in_a_task_leaves_the_sync_facade_working(worker: str) -> None:
    options: dict[str, Any] = {"max_workers": 2, "poll_interval": 0.05}
    with OmniQ(
        task_queue=MemoryTaskQueue(),
        result_store=MemoryResultStorage(),
        event_store=MemoryEventStorage(),
        worker=worker,
        worker_config=options,
    ) as oq:
        oq.start_worker()
        exits = oq.enqueue(taskfns.exit_now, max_retries=0)
        interrupts = oq.enqueue(taskfns.interrupt, max_retries=0)
        assert oq.get_result(exits, wait=True, timeout=10).error.type == "SystemExit"
        assert oq.get_result(interrupts, wait=True, timeout=10).error.type == "KeyboardInterrupt"
        # OmniQ's event-loop thread lives on: later sync calls return.
        later = oq.enqueue(taskfns.add, args=(1, 2))
        assert oq.get_result(later, wait=True, timeout=10).unwrap() == 3
        oq.stop_worker()
        assert oq.count(status=TaskStatus.FAILED) == 2
