"""The process-pool worker: children run tasks; timeouts, crashes and cancels cost one child."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import taskfns
from conftest import wait_until

from omniq.models import TaskStatus
from omniq.queue import AsyncSQLiteTaskQueue
from omniq.storage import AsyncSQLiteResultStorage
from omniq.workers import AsyncProcessPoolWorker, ProcessPoolWorker


@pytest.fixture
async def stores(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncSQLiteTaskQueue, AsyncSQLiteResultStorage]]:
    db = str(tmp_path / "omniq.db")
    queue, results = AsyncSQLiteTaskQueue(db_path=db), AsyncSQLiteResultStorage(db_path=db)
    yield queue, results
    await queue.close()
    await results.close()


async def test_runs_sync_async_and_by_value_functions_in_children(stores) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=2, poll_interval=0.05
    ):
        ids = [
            await queue.enqueue(taskfns.add, args=(1, 2)),
            await queue.enqueue(taskfns.async_add, args=(3, 4)),
            await queue.enqueue(lambda x: (x, "by value"), args=(5,)),
            await queue.enqueue(taskfns.pid),
            await queue.enqueue(taskfns.whoami),
        ]
        values = [(await results.get(i, wait=True, timeout=30)).unwrap() for i in ids]
    assert values[:3] == [3, 7, (5, "by value")]
    assert values[3] != os.getpid()
    assert values[4] == {"task_id": ids[4], "attempt": 1}


async def test_timeout_kills_the_child_and_the_pool_goes_on(stores, tmp_path: Path) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, poll_interval=0.05
    ):
        slow = await queue.enqueue(
            taskfns.block_until_killed, args=(str(tmp_path / "x"), 60), timeout=0.5, max_retries=0
        )
        after = await queue.enqueue(taskfns.add, args=(2, 2))
        result = await results.get(slow, wait=True, timeout=30)
        assert (await results.get(after, wait=True, timeout=30)).unwrap() == 4
    assert result.status is TaskStatus.FAILED and result.error.type == "TaskTimeoutError"


async def test_a_crashing_child_fails_only_its_task(stores) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, poll_interval=0.05
    ):
        crashed = await queue.enqueue(taskfns.crash, args=(7,), max_retries=0)
        after = await queue.enqueue(taskfns.add, args=(1, 1))
        result = await results.get(crashed, wait=True, timeout=30)
        assert (await results.get(after, wait=True, timeout=30)).unwrap() == 2
    assert result.status is TaskStatus.FAILED and result.error.type == "ChildCrashed"
    assert "exit code 7" in result.error.message


async def test_cancel_stops_the_child(stores, tmp_path: Path) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, poll_interval=0.05, lease_timeout=1.5
    ):
        running = await queue.enqueue(taskfns.block_until_killed, args=(str(tmp_path / "y"), 60))

        async def is_running() -> bool:
            return (await queue.get_task(running)).status is TaskStatus.RUNNING

        await wait_until(is_running, timeout=30)
        assert await queue.cancel(running)
        result = await results.get(running, wait=True, timeout=30)
        after = await queue.enqueue(taskfns.add, args=(5, 5))
        assert (await results.get(after, wait=True, timeout=30)).unwrap() == 10
    assert result.status is TaskStatus.CANCELLED


async def test_children_are_recycled_and_bad_payloads_fail(stores) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, max_tasks_per_child=1, poll_interval=0.05
    ):
        ids = [await queue.enqueue(taskfns.pid) for _ in range(3)]
        missing = await queue.enqueue("no_such_module_q:f")
        pids = {(await results.get(i, wait=True, timeout=30)).unwrap() for i in ids}
        failed = await results.get(missing, wait=True, timeout=30)
    assert len(pids) == 3
    assert failed.status is TaskStatus.FAILED and failed.attempts == 1
    assert "no_such_module_q" in failed.error.message


def test_sync_twin(tmp_path: Path) -> None:
    from omniq.queue import SQLiteTaskQueue
    from omniq.storage import SQLiteResultStorage

    db = str(tmp_path / "omniq.db")
    with SQLiteTaskQueue(db_path=db) as queue, SQLiteResultStorage(db_path=db) as results:
        worker = ProcessPoolWorker(queue=queue, result_store=results, max_workers=2)
        worker.start()
        try:
            task_id = queue.enqueue(taskfns.burn, args=(5,))
            assert worker.get_result(task_id, timeout=30).unwrap() > 0
        finally:
            worker.stop()
