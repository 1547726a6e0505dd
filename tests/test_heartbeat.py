"""Worker heartbeats: a running worker keeps a record of itself in the task-queue backend, which
``list_workers`` reports while it is fresh; a graceful stop deletes it."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import taskfns
from backends import BackendSpec, embedded_specs
from conftest import Storages, wait_until

from omniq import AsyncOmniQ
from omniq.models import utcnow
from omniq.workers import AsyncThreadPoolWorker, heartbeat
from omniq.workers.heartbeat import WorkerInfo, list_workers


@pytest.fixture(params=["memory", "sqlite"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    """The embedded backends only (this overrides conftest's every-backend ``spec``)."""
    return embedded_specs(tmp_path)[request.param]


@pytest.fixture
def fast_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """A beat every 0.2 s (fresh for 0.6 s), so that a beat soon lists a task just started."""
    monkeypatch.setattr(heartbeat, "INTERVAL", 0.2)


async def test_a_running_worker_is_listed_with_its_identity_and_tasks(
    storages: Storages, fast_beats: None
) -> None:
    queue, results = storages.queue, storages.results
    worker = AsyncThreadPoolWorker(
        queue=queue,
        result_store=results,
        queues=["high", "low"],
        max_workers=2,
        poll_interval=0.05,
        stop_timeout=0.1,
        worker_id="hb-worker",
    )
    async with worker:
        done = await queue.enqueue(taskfns.add, args=(1, 2), queue_name="low")
        assert (await results.get(done, wait=True, timeout=10)).unwrap() == 3
        busy = await queue.enqueue(taskfns.cooperative_sleep, args=(60,), queue_name="high")
        listed: list[WorkerInfo] = []

        async def beats_while_busy() -> bool:
            listed[:] = await list_workers(queue)
            return any(busy in w.running and w.processed == 1 for w in listed)

        await wait_until(beats_while_busy)
        [info] = listed
        assert info.worker_id == "hb-worker"
        assert info.worker_type == "thread_pool"
        assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
        assert info.queues == ["high", "low"] and info.max_workers == 2
        assert info.running == [busy]
        assert info.started_at <= info.last_seen <= utcnow()

    # Stopped: the record is deleted, not left to go stale.
    assert await list_workers(queue) == []
    assert await queue.list_records(heartbeat.KIND) == []


async def test_the_facade_lists_its_worker_until_it_stops(storages: Storages) -> None:
    oq = AsyncOmniQ(
        task_queue=storages.queue,
        result_store=storages.results,
        event_store=False,
        worker="thread_pool",
        worker_config={"max_workers": 1, "poll_interval": 0.05},
    )
    await oq.start_worker()
    assert oq.worker is not None
    worker_id = oq.worker.worker_id

    async def listed() -> bool:
        return [w.worker_id for w in await oq.list_workers()] == [worker_id]

    await wait_until(listed)
    await oq.stop_worker()

    assert await oq.list_workers() == []


async def test_stale_records_are_not_listed_and_old_ones_are_dropped(
    storages: Storages,
) -> None:
    queue = storages.queue
    now = utcnow()

    def record(worker_id: str, age: timedelta) -> bytes:
        info = WorkerInfo(
            worker_id=worker_id,
            worker_type="thread_pool",
            host="elsewhere",
            pid=1,
            queues=None,
            max_workers=1,
            started_at=now - age,
            last_seen=now - age,
        )
        return msgspec.msgpack.encode(info)

    await queue.put_record(heartbeat.KIND, "fresh", record("fresh", timedelta(0)))
    await queue.put_record(heartbeat.KIND, "silent", record("silent", timedelta(minutes=1)))
    await queue.put_record(heartbeat.KIND, "dead", record("dead", timedelta(hours=2)))
    await queue.put_record(heartbeat.KIND, "corrupt", b"\xc1 not msgpack")

    assert [w.worker_id for w in await list_workers(queue)] == ["fresh"]
    # Silent for a while: kept (the worker may come back); silent for over an hour: dropped.
    kept = [key for key, _, _ in await queue.list_records(heartbeat.KIND)]
    assert kept == ["corrupt", "fresh", "silent"]
