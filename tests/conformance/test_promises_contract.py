"""The guarantees the README and docs promise, each proven end to end on every backend.

Each test names the promise it checks and fails when that promise is broken (see
docs/guarantees.md for the list). Where a promise is about failure, the test injects it: a
result store that holds its write, an event store that fails or hangs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import promisefns
import pytest
import taskfns
from conftest import Storages, wait_until

import omniq.workers.claiming as claiming
from omniq.backends.memory.storage import AsyncMemoryEventStorage
from omniq.dependencies import DependencyResolver
from omniq.maintenance import Maintenance
from omniq.models import CLAIMABLE, EventType, TaskEvent, TaskStatus, utcnow
from omniq.retry import MAX_RETRY_DELAY
from omniq.workers import AsyncGeventWorker, AsyncThreadPoolWorker, AsyncWorker
from omniq.workers._events import EventBuffer

WORKERS = {"async": AsyncWorker, "thread": AsyncThreadPoolWorker, "gevent": AsyncGeventWorker}


def make_worker(storages: Storages, kind: str = "async", **options: Any) -> Any:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("result_store", storages.results)
    options.setdefault("event_store", storages.events)
    return WORKERS[kind](queue=storages.queue, **options)


class Proxy:
    """Forwards everything to ``inner``; subclasses override the calls they intercept."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _task_status(storages: Storages, task_id: str) -> TaskStatus | None:
    task = await storages.queue.get_task(task_id)
    return task.status if task is not None else None


# --- results ----------------------------------------------------------------------------------


async def test_results_expire_after_their_result_ttl(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    async with make_worker(storages):
        task_id = await q.enqueue(taskfns.add, {"a": 1, "b": 2}, result_ttl=timedelta(seconds=1))
        result = await results.get(task_id, wait=True, timeout=10)
    assert result.unwrap() == 3
    assert result.expires_at is not None and result.finished_at is not None
    assert abs((result.expires_at - result.finished_at).total_seconds() - 1.0) < 0.5
    # Past its TTL the result is gone for readers, and clean-up (or the server's own expiry,
    # a few milliseconds later on Redis and NATS) removes it from storage.
    await wait_until(lambda: _result_gone(results, task_id), timeout=5)
    await wait_until(lambda: _result_deleted(results, task_id), timeout=5)


async def _result_gone(results: Any, task_id: str) -> bool:
    return await results.get(task_id) is None


async def _result_deleted(results: Any, task_id: str) -> bool:
    await results.cleanup_expired()
    return await results._get(task_id) is None


async def test_results_are_written_before_statuses(storages: Storages) -> None:
    """A crash between the two writes re-runs a task; it never loses a final status's result."""
    seen: list[TaskStatus | None] = []

    class StatusAtWrite(Proxy):
        async def put_encoded(self, batch: Any) -> None:
            for result, _ in batch:
                seen.append(await _task_status(storages, result.task_id))
            await self.inner.put_encoded(batch)

    q = storages.queue
    async with make_worker(storages, max_workers=4, result_store=StatusAtWrite(storages.results)):
        ids = [await q.enqueue(taskfns.add, args=(i, i)) for i in range(6)]
        for task_id in ids:
            assert (await storages.results.get(task_id, wait=True, timeout=10)).ok
    assert len(seen) == len(ids) and set(seen) == {TaskStatus.RUNNING}


# --- TTL --------------------------------------------------------------------------------------


async def test_ttl_counts_from_run_at_not_from_enqueue(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(
        taskfns.add, args=(2, 3), run_in=timedelta(seconds=1), ttl=timedelta(seconds=0.6)
    )
    task = await q.get_task(task_id)
    assert task.expires_at - task.run_at == timedelta(seconds=0.6)
    async with make_worker(storages):
        result = await storages.results.get(task_id, wait=True, timeout=10)
    assert result.status is TaskStatus.SUCCESS and result.unwrap() == 5


async def test_ttl_applies_only_before_the_first_start(storages: Storages, tmp_path: Path) -> None:
    """A task that started in time is not expired while it waits for a retry."""
    q = storages.queue
    runs = str(tmp_path / "runs")
    async with make_worker(storages):
        task_id = await q.enqueue(
            promisefns.fail_first_recording, args=(runs,), ttl=0.3, retry_delay=1.2, max_retries=2
        )
        result = await storages.results.get(task_id, wait=True, timeout=10)
    assert result.status is TaskStatus.SUCCESS and result.attempts == 2
    # Maintenance leaves a retrying task alone once its TTL has passed.
    waiting = await q.enqueue(
        taskfns.fail, max_retries=1, retry_delay=3600, ttl=0.3, queue_name="retrying"
    )
    async with make_worker(storages, queues=["retrying"]):
        await wait_until(lambda: _is(storages, waiting, TaskStatus.RETRYING), timeout=10)
    await asyncio.sleep(0.4)  # the TTL itself must pass: time is the subject here
    assert await Maintenance(q, storages.results).expire_overdue() == 0
    assert await _task_status(storages, waiting) is TaskStatus.RETRYING


async def _is(storages: Storages, task_id: str, status: TaskStatus) -> bool:
    return await _task_status(storages, task_id) is status


# --- retries ----------------------------------------------------------------------------------


async def test_the_worker_waits_retry_delay_before_a_retry(
    storages: Storages, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with make_worker(storages):
        task_id = await storages.queue.enqueue(
            promisefns.fail_first_recording, args=(str(runs),), retry_delay=0.8, max_retries=1
        )
        result = await storages.results.get(task_id, wait=True, timeout=10)
    assert result.ok
    first, second = (float(x) for x in runs.read_text().split())
    # "Equal jitter": a draw from the upper half of retry_delay * 2**(attempt-1).
    assert second - first >= 0.4 - 0.02


async def test_retry_delays_are_capped_at_one_hour(storages: Storages) -> None:
    q = storages.queue
    async with make_worker(storages):
        task_id = await q.enqueue(taskfns.fail, retry_delay=10**6, max_retries=1)
        await wait_until(lambda: _is(storages, task_id, TaskStatus.RETRYING), timeout=10)
    task = await q.get_task(task_id)
    delay = (task.run_at - utcnow()).total_seconds()
    assert MAX_RETRY_DELAY / 2 - 60 <= delay <= MAX_RETRY_DELAY


# --- leases -----------------------------------------------------------------------------------


async def test_a_lease_is_renewed_while_the_task_outlives_it(
    storages: Storages, tmp_path: Path
) -> None:
    """A task running three times its lease is not taken by a second worker waiting to claim."""
    q = storages.queue
    started, gate, log = tmp_path / "started", tmp_path / "gate", str(tmp_path / "ran")
    async with make_worker(storages, lease_timeout=0.6) as first:
        task_id = await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        await q.enqueue(taskfns.record, args=(log, 1))  # the second worker has work too
        await wait_until(started.exists, timeout=10)
        async with make_worker(storages, lease_timeout=0.6, scheduler=False):
            leases = set()
            # Renewed every third of the lease: many distinct lease ends over three leases.
            while len(leases) < 6:
                task = await q.get_task(task_id)
                assert task.status is TaskStatus.RUNNING and task.worker_id == first.worker_id
                assert task.attempts == 1
                leases.add(task.lease_until)
                await asyncio.sleep(0.05)
            gate.write_text("open")
            result = await storages.results.get(task_id, wait=True, timeout=10)
    assert result.ok and result.attempts == 1 and result.worker_id == first.worker_id


async def test_leases_are_renewed_at_least_every_second(storages: Storages, tmp_path: Path) -> None:
    q = storages.queue
    started, gate = tmp_path / "started", tmp_path / "gate"
    async with make_worker(storages, lease_timeout=9):
        task_id = await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        await wait_until(started.exists, timeout=10)
        first = (await q.get_task(task_id)).lease_until
        # A third of 9 s would be 3 s; the cap renews within about a second.
        await wait_until(lambda: _lease_moved(q, task_id, first), timeout=1.8)
        gate.write_text("open")
        assert (await storages.results.get(task_id, wait=True, timeout=10)).ok


async def _lease_moved(q: Any, task_id: str, before: Any) -> bool:
    return (await q.get_task(task_id)).lease_until != before


async def test_leases_are_renewed_until_the_outcome_is_written(storages: Storages) -> None:
    """While a slow result store holds the outcome, the task stays leased to its worker."""
    gate = asyncio.Event()
    writing = asyncio.Event()

    class SlowResults(Proxy):
        async def put_encoded(self, batch: Any) -> None:
            writing.set()
            await gate.wait()
            await self.inner.put_encoded(batch)

    q = storages.queue
    async with make_worker(
        storages, lease_timeout=0.6, result_store=SlowResults(storages.results)
    ) as first:
        task_id = await q.enqueue(taskfns.add, args=(1, 2))
        await asyncio.wait_for(writing.wait(), 10)
        async with make_worker(storages, lease_timeout=0.6, scheduler=False):
            leases = set()
            while len(leases) < 6:  # three leases' worth of renewals
                task = await q.get_task(task_id)
                assert task.status is TaskStatus.RUNNING and task.attempts == 1
                assert task.worker_id == first.worker_id
                leases.add(task.lease_until)
                await asyncio.sleep(0.05)
            gate.set()
            await wait_until(lambda: _is(storages, task_id, TaskStatus.SUCCESS), timeout=10)
    result = await storages.results.get(task_id)
    assert result.attempts == 1 and result.worker_id == first.worker_id


# --- events -----------------------------------------------------------------------------------


async def test_a_failing_event_store_never_fails_a_task_and_its_events_are_kept(
    storages: Storages,
) -> None:
    inner = AsyncMemoryEventStorage(project_name=storages.project)
    broken = {"on": True, "failures": 0}

    class FailingEvents(Proxy):
        async def log_many(self, events: Any) -> None:
            if broken["on"]:
                broken["failures"] += 1
                raise ConnectionError("event store down")
            await self.inner.log_many(events)

    async with make_worker(storages, event_store=FailingEvents(inner)):
        task_id = await storages.queue.enqueue(taskfns.add, args=(1, 1))
        assert (await storages.results.get(task_id, wait=True, timeout=10)).unwrap() == 2
        await wait_until(lambda: broken["failures"] >= 2, timeout=10)
        assert await inner.get_events(task_id=task_id) == []
        broken["on"] = False  # the store comes back: the kept events land
        await wait_until(lambda: _has_event(inner, task_id, EventType.COMPLETE), timeout=10)
    types = [e.type for e in await inner.get_events(task_id=task_id)]
    assert types == [EventType.EXECUTING, EventType.COMPLETE]


async def _has_event(store: Any, task_id: str, kind: EventType) -> bool:
    return kind in [e.type for e in await store.get_events(task_id=task_id)]


async def test_a_hanging_event_store_never_slows_a_task(storages: Storages) -> None:
    inner = AsyncMemoryEventStorage(project_name=storages.project)
    gate = asyncio.Event()

    class HangingEvents(Proxy):
        async def log_many(self, events: Any) -> None:
            await gate.wait()
            await self.inner.log_many(events)

    async with make_worker(storages, event_store=HangingEvents(inner)):
        ids = [await storages.queue.enqueue(taskfns.add, args=(i, 1)) for i in range(3)]
        for task_id in ids:
            # The results arrive while every event write still hangs.
            assert (await storages.results.get(task_id, wait=True, timeout=10)).ok
        gate.set()
        await wait_until(lambda: _has_event(inner, ids[-1], EventType.COMPLETE), timeout=10)


async def test_pending_events_are_capped_at_100000_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class DownStore:
        async def log_many(self, events: Any) -> None:
            raise ConnectionError("down")

    buffer = EventBuffer(DownStore())
    now = utcnow()
    events = [
        TaskEvent(task_id=str(i), type=EventType.EXECUTING, timestamp=now) for i in range(100_005)
    ]
    with caplog.at_level(logging.WARNING, logger="omniq.events"):
        for event in events:
            buffer.emit(event)
    assert len(buffer._pending) == 100_000
    assert buffer._pending[0].task_id == "5"  # the oldest were dropped
    warnings = [r for r in caplog.records if "dropping old events" in r.getMessage()]
    assert len(warnings) == 1
    await buffer.flush()  # a failed write keeps them
    assert len(buffer._pending) == 100_000


# --- cooperative stop -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["thread", "gevent"])
async def test_thread_tasks_are_told_to_stop_on_timeout(
    storages: Storages, tmp_path: Path, kind: str
) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    async with make_worker(storages, kind):
        task_id = await storages.queue.enqueue(
            promisefns.stop_when_told,
            args=(str(started), str(stopped)),
            timeout=0.3,
            max_retries=0,
        )
        result = await storages.results.get(task_id, wait=True, timeout=10)
        await wait_until(stopped.exists, timeout=10)
    assert result.status is TaskStatus.FAILED and result.error.type == "TaskTimeoutError"


@pytest.mark.parametrize("kind", ["thread", "gevent"])
async def test_thread_tasks_are_told_to_stop_on_cancel(
    storages: Storages, tmp_path: Path, kind: str
) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    q = storages.queue
    async with make_worker(storages, kind, lease_timeout=1.5):
        task_id = await q.enqueue(promisefns.stop_when_told, args=(str(started), str(stopped)))
        await wait_until(started.exists, timeout=10)
        assert await q.cancel(task_id)
        await wait_until(stopped.exists, timeout=10)
        result = await storages.results.get(task_id, wait=True, timeout=10)
    assert result.status is TaskStatus.CANCELLED


# --- claiming ahead ---------------------------------------------------------------------------


async def test_claiming_ahead_holds_at_most_four_times_max_workers(
    storages: Storages, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claiming, "_SHORT_TASK", 5.0)  # a loaded machine is slow
    monkeypatch.setattr(claiming, "_AHEAD_HORIZON", 10.0)  # ask for as many as allowed
    q = storages.queue
    held = []
    async with make_worker(storages, max_workers=2) as worker:
        first = await q.enqueue(taskfns.noop)
        assert (await storages.results.get(first, wait=True, timeout=10)).ok
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                held.append(len(worker._ready) + len(worker._running))
                await asyncio.sleep(0.0005)

        sampler = asyncio.ensure_future(sample())
        await q.enqueue_many([{"func": taskfns.noop} for _ in range(200)])
        await worker.join(timeout=30)
        done.set()
        await sampler
    # Claimed ahead, never more than 4 x max_workers beyond the slots (a backend whose claims
    # are slower than the tasks may never fill the allowance).
    assert 2 < max(held) <= 2 + 4 * 2


# --- dependencies -----------------------------------------------------------------------------


async def test_a_dependency_failure_cascades_through_all_levels_in_one_pass(
    storages: Storages,
) -> None:
    q = storages.queue
    root = await q.enqueue(taskfns.noop)
    chain = [root]
    for _ in range(4):
        chain.append(await q.enqueue(taskfns.noop, depends_on=[chain[-1]]))
    assert await q.transition(root, CLAIMABLE, status=TaskStatus.FAILED) is not None
    await DependencyResolver(q, storages.results).resolve()
    for task_id in chain[1:]:
        assert await _task_status(storages, task_id) is TaskStatus.CANCELLED
        result = await storages.results.get(task_id)
        assert result.status is TaskStatus.CANCELLED
        assert result.error.type == "DependencyFailed"
