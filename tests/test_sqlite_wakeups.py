"""SQLite wake-ups across processes: an idle worker and a result waiter in other processes are
woken by a commit, not by their poll intervals (which these tests set far beyond their bounds).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from omniq.backends.sqlite.queue import AsyncSQLiteTaskQueue
from omniq.backends.sqlite.storage import AsyncSQLiteResultStorage
from omniq.models import TaskResult, TaskStatus
from omniq.workers import AsyncWorker

FUNC = "os:getcwd"
POLL_S = 30.0  # far beyond every bound below: a pass means a wake-up, not a poll


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "omniq.db")


def _idle_worker(db: str, idle: Any) -> None:
    """A worker process that sets ``idle`` when it first waits for tasks, then runs until
    terminated."""

    async def main() -> None:
        queue = AsyncSQLiteTaskQueue(db_path=db, project_name="p")
        results = AsyncSQLiteResultStorage(db_path=db, project_name="p")
        wait_for_tasks = queue.wait_for_tasks

        async def waiting(timeout: float, queues: Any = None) -> None:
            idle.set()
            await wait_for_tasks(timeout, queues)

        queue.wait_for_tasks = waiting  # type: ignore[method-assign]
        worker = AsyncWorker(queue=queue, result_store=results, poll_interval=POLL_S)
        await worker.run()

    asyncio.run(main())


def _wait_for_result(db: str, task_id: str, waiting: Any, out: Any) -> None:
    """A client process: ``get(wait=True)`` for ``task_id`` (``waiting`` is set once it waits),
    putting the value and the seconds it waited in ``out``."""
    import omniq.storage.base

    omniq.storage.base._POLL_MAX = POLL_S  # its own re-checks would come far too late

    async def main() -> None:
        results = AsyncSQLiteResultStorage(db_path=db, project_name="p")
        get_live = results._get_live
        looks = 0

        async def look(key: str) -> TaskResult | None:
            nonlocal looks
            found = await get_live(key)
            looks += 1
            if looks == 2:  # the look after subscribing: what follows is the wait
                waiting.set()
            return found

        results._get_live = look  # type: ignore[method-assign]
        started = time.monotonic()
        result = await results.get(task_id, wait=True, timeout=60)
        out.put((result.value if result else None, time.monotonic() - started))
        await results.close()

    asyncio.run(main())


async def test_an_enqueue_wakes_an_idle_worker_in_another_process(db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    idle = ctx.Event()
    worker = ctx.Process(target=_idle_worker, args=(db, idle))
    worker.start()
    queue = AsyncSQLiteTaskQueue(db_path=db, project_name="p")
    results = AsyncSQLiteResultStorage(db_path=db, project_name="p")
    try:
        assert await asyncio.to_thread(idle.wait, 60), "the worker never went idle"
        task_id = await queue.enqueue(FUNC)
        result = await results.get(task_id, wait=True, timeout=POLL_S / 3)
        assert result is not None and result.status == TaskStatus.SUCCESS
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.join, 30)
        await queue.close()
        await results.close()


async def test_a_result_written_wakes_a_waiter_in_another_process(db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    waiting, out = ctx.Event(), ctx.Queue()
    results = AsyncSQLiteResultStorage(db_path=db, project_name="p")
    await results.get("t")  # the database exists before the waiter opens it
    client = ctx.Process(target=_wait_for_result, args=(db, "t", waiting, out))
    client.start()
    try:
        assert await asyncio.to_thread(waiting.wait, 60), "the client never waited"
        await results.put(TaskResult(task_id="t", status=TaskStatus.SUCCESS, value=7))
        value, waited = await asyncio.to_thread(out.get, True, 60)
        assert value == 7
        assert waited < POLL_S / 3
    finally:
        await asyncio.to_thread(client.join, 30)
        await results.close()
    assert client.exitcode == 0


async def test_one_watcher_thread_serves_every_waiter_of_a_file(db: str) -> None:
    stores = [AsyncSQLiteResultStorage(db_path=db, project_name=f"p{i % 2}") for i in range(4)]
    try:
        waits = [
            asyncio.create_task(store.get(f"t{i}", wait=True, timeout=30))
            for store in stores
            for i in range(5)
        ]
        name = f"omniq-sqlite-watch {stores[0].db_path}"

        def watchers() -> int:
            return sum(thread.name == name for thread in threading.enumerate())

        await wait_until(lambda: watchers() > 0)
        assert watchers() == 1
        for i, store in enumerate(stores):
            await store.put_many(
                [TaskResult(task_id=f"t{j}", status=TaskStatus.SUCCESS, value=i) for j in range(5)]
            )
        assert len(await asyncio.wait_for(asyncio.gather(*waits), 10)) == 20
    finally:
        for store in stores:
            await store.close()
