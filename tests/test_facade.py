"""The facades: embedded default, mixing twins, decorator, cancel, events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import taskfns
from conftest import wait_until

from omniq import AsyncOmniQ, OmniQ, TaskFailedError, TaskStatus
from omniq.errors import ConfigError
from omniq.queue import AsyncMemoryTaskQueue, MemoryTaskQueue
from omniq.storage import MemoryEventStorage, MemoryResultStorage


def test_default_omniq_runs_on_embedded_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNIQ_BASE_DIR", str(tmp_path / "data"))
    with OmniQ() as oq:
        oq.start_worker()
        task_id = oq.enqueue(taskfns.add, {"a": 2, "b": 3})
        assert oq.get_result(task_id, wait=True, timeout=10).unwrap() == 5
        oq.stop_worker()
        types = [e.type.value for e in oq.get_events(task_id=task_id)]
    assert types == ["enqueued", "executing", "complete"]
    assert (tmp_path / "data" / "omniq.db").exists()


def test_sync_facade_with_sync_components_and_decorator() -> None:
    with OmniQ(
        task_queue=MemoryTaskQueue(),
        result_store=MemoryResultStorage(),
        event_store=MemoryEventStorage(),
        worker="thread",
        worker_config={"max_workers": 2},
    ) as oq:
        oq.start_worker()
        mul = oq.task(max_retries=0)(lambda a, b: a * b)
        assert oq.get_result(mul.enqueue(6, b=7), wait=True, timeout=10).unwrap() == 42
        failing = oq.enqueue(taskfns.fail, max_retries=0)
        with pytest.raises(TaskFailedError, match="boom"):
            oq.get_result(failing, wait=True, timeout=10).unwrap()
        assert oq.count(status=TaskStatus.FAILED) == 1
        assert oq.requeue(failing) is True
        assert oq.get_result(failing, wait=True, timeout=10).status is TaskStatus.FAILED


def test_cancel_through_the_facade_records_a_result(tmp_path: Path) -> None:
    with OmniQ(
        task_queue=MemoryTaskQueue(),
        result_store=MemoryResultStorage(),
        event_store=MemoryEventStorage(),
    ) as oq:
        task_id = oq.enqueue(taskfns.noop, run_in=60)
        assert oq.cancel(task_id) is True
        assert oq.get_result(task_id).status is TaskStatus.CANCELLED
        assert [e.type.value for e in oq.get_events(task_id=task_id)] == ["enqueued", "cancelled"]
        assert oq.cancel(task_id) is False


async def test_async_facade_accepts_sync_twins_from_another_loop() -> None:
    queue, results = MemoryTaskQueue(), MemoryResultStorage()  # live on OmniQ's loop thread
    async with AsyncOmniQ(
        task_queue=queue, result_store=results, event_store=False, worker="async"
    ) as oq:
        await oq.start_worker()
        task_id = await oq.enqueue(taskfns.async_add, args=(1, 2))
        assert (await oq.get_result(task_id, wait=True, timeout=10)).unwrap() == 3
    assert results.get(task_id).value == 3


async def test_async_facade_decorator_and_join() -> None:
    async with AsyncOmniQ(
        task_queue=AsyncMemoryTaskQueue(), result_store=False, event_store=False, worker="async"
    ) as oq:
        double = oq.task(lambda x: x * 2)
        ids = [await double.enqueue(i) for i in range(20)]
        await oq.start_worker(max_workers=5)
        await oq.join(timeout=10)
        assert await oq.count(status="success") == len(ids)
        with pytest.raises(ConfigError, match="result store"):
            await oq.get_result(ids[0])


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"unknown worker type .fibre."):
        OmniQ(task_queue=MemoryTaskQueue(), worker="fibre")
    with pytest.raises(ConfigError, match="max_workers"):
        asyncio.run(_start_bad_worker())


async def _start_bad_worker() -> None:
    oq = AsyncOmniQ(
        task_queue=AsyncMemoryTaskQueue(), result_store=False, event_store=False, worker="async"
    )
    await oq.start_worker(max_workers=-1)


async def test_worker_stop_hands_back_unfinished_tasks() -> None:
    queue = AsyncMemoryTaskQueue()
    async with AsyncOmniQ(
        task_queue=queue, result_store=False, event_store=False, worker="async"
    ) as oq:
        await oq.start_worker(stop_timeout=0.1)
        task_id = await oq.enqueue(taskfns.async_sleep, args=(60,))
        await wait_until(lambda: _is_running(queue, task_id))
        await oq.stop_worker()
        task = await queue.get_task(task_id)
        assert task.status is TaskStatus.PENDING and task.attempts == 1


async def _is_running(queue: AsyncMemoryTaskQueue, task_id: str) -> bool:
    task = await queue.get_task(task_id)
    return task.status is TaskStatus.RUNNING
