"""End to end on every backend: workers run tasks, retry, expire, cancel, survive bad input and
dead workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import taskfns
from claimprobe import ClaimLoop
from conftest import TESTS_DIR, Storages, stop_process, wait_until

import omniq.workers.claiming as claiming
from omniq.models import EventType, Task, TaskStatus, utcnow
from omniq.workers import AsyncGeventWorker, AsyncThreadPoolWorker, AsyncWorker

WORKERS = {"async": AsyncWorker, "thread": AsyncThreadPoolWorker, "gevent": AsyncGeventWorker}


def make_worker(storages: Storages, kind: str = "async", **options):
    options.setdefault("poll_interval", 0.05)
    return WORKERS[kind](
        queue=storages.queue, result_store=storages.results, event_store=storages.events, **options
    )


@pytest.mark.parametrize("kind", list(WORKERS))
async def test_runs_sync_and_async_functions(storages: Storages, kind: str) -> None:
    q, results = storages.queue, storages.results
    async with make_worker(storages, kind, max_workers=4):
        sync_id = await q.enqueue(taskfns.add, {"a": 1, "b": 2})
        async_id = await q.enqueue(taskfns.async_add, args=(3, 4))
        by_value = await q.enqueue(lambda x: x * 10, args=(5,))
        ctx_id = await q.enqueue(taskfns.whoami)
        assert (await results.get(sync_id, wait=True, timeout=10)).unwrap() == 3
        assert (await results.get(async_id, wait=True, timeout=10)).unwrap() == 7
        assert (await results.get(by_value, wait=True, timeout=10)).unwrap() == 50
        assert (await results.get(ctx_id, wait=True, timeout=10)).unwrap() == {
            "task_id": ctx_id,
            "attempt": 1,
        }
    result = await results.get(sync_id)
    assert result.status is TaskStatus.SUCCESS and result.attempts == 1 and result.worker_id
    assert (await q.get_task(sync_id)).status is TaskStatus.SUCCESS


async def test_strict_queue_priority_when_busy(storages: Storages, tmp_path: Path) -> None:
    q = storages.queue
    log = str(tmp_path / "order.log")
    for i in range(3):
        await q.enqueue(taskfns.record, args=(log, 100 + i), queue_name="low", priority=9)
    for i in range(3):
        await q.enqueue(taskfns.record, args=(log, i), queue_name="high")
    async with make_worker(storages, "thread", max_workers=1, queues=["high", "low"]) as worker:
        await worker.join(timeout=20)
    order = [int(line) for line in Path(log).read_text().split()]
    assert order == [0, 1, 2, 100, 101, 102]


async def test_retries_then_fails_into_dead_letters(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    async with make_worker(storages, max_workers=2) as worker:
        task_id = await q.enqueue(
            taskfns.fail, {"message": "always"}, max_retries=2, retry_delay=0.01
        )
        result = await results.get(task_id, wait=True, timeout=20)
        await worker.join(timeout=10)
    assert result.status is TaskStatus.FAILED and result.attempts == 3
    assert result.error.type == "ValueError" and result.error.message == "always"
    assert "taskfns.py" in result.error.traceback
    with pytest.raises(Exception, match="always"):
        result.unwrap()
    assert [t.id for t in await q.list_tasks(status=TaskStatus.FAILED)] == [task_id]
    if storages.events is not None:
        await wait_until(lambda: _event_types(storages, task_id, 6), timeout=5)
        types = [e.type for e in await storages.events.get_events(task_id=task_id)]
        assert types == [
            EventType.EXECUTING,
            EventType.RETRY,
            EventType.EXECUTING,
            EventType.RETRY,
            EventType.EXECUTING,
            EventType.ERROR,
        ]


async def _event_types(storages: Storages, task_id: str, n: int) -> bool:
    return len(await storages.events.get_events(task_id=task_id)) >= n


async def test_retry_succeeds_and_requeue_runs_again(storages: Storages, tmp_path: Path) -> None:
    q, results = storages.queue, storages.results
    counter = str(tmp_path / "count")
    async with make_worker(storages, max_workers=2) as worker:
        flaky = await q.enqueue(
            taskfns.fail_times, args=(counter, 2), max_retries=3, retry_delay=0.01
        )
        assert (await results.get(flaky, wait=True, timeout=20)).unwrap() == "ok"
        assert (await results.get(flaky)).attempts == 3
        dead = await q.enqueue(taskfns.fail, max_retries=0)
        assert (await results.get(dead, wait=True, timeout=10)).status is TaskStatus.FAILED
        await worker.join(timeout=10)
        await results.delete(dead)
        assert await q.requeue(dead)
        assert (await results.get(dead, wait=True, timeout=10)).status is TaskStatus.FAILED
        assert (await q.get_task(dead)).attempts == 1


async def test_timeout_fails_the_attempt(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    async with make_worker(storages, max_workers=2):
        task_id = await q.enqueue(taskfns.async_sleep, args=(30,), timeout=0.2, max_retries=0)
        result = await results.get(task_id, wait=True, timeout=10)
    assert result.status is TaskStatus.FAILED and result.error.type == "TaskTimeoutError"


async def test_ttl_expires_unstarted_tasks(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    task_id = await q.enqueue(taskfns.noop, ttl=0.05)
    await asyncio.sleep(0.1)  # the TTL itself must pass: time is the subject here
    async with make_worker(storages):
        result = await results.get(task_id, wait=True, timeout=10)
    assert result.status is TaskStatus.EXPIRED and result.error.type == "TaskExpired"
    assert (await q.get_task(task_id)).status is TaskStatus.EXPIRED


async def test_cancel_pending_and_running(storages: Storages, tmp_path: Path) -> None:
    q, results = storages.queue, storages.results
    pending = await q.enqueue(taskfns.record, args=(str(tmp_path / "never"), 1), run_in=30)
    assert await q.cancel(pending)
    async with make_worker(storages, max_workers=2, lease_timeout=1.5):
        running = await q.enqueue(taskfns.async_sleep, args=(60,))
        await wait_until(lambda: _status_is(q, running, TaskStatus.RUNNING), timeout=10)
        assert await q.cancel(running)
        result = await results.get(running, wait=True, timeout=10)
    assert result.status is TaskStatus.CANCELLED
    assert (await q.get_task(running)).status is TaskStatus.CANCELLED
    assert not (tmp_path / "never").exists()


async def _status_is(q, task_id: str, status: TaskStatus) -> bool:
    task = await q.get_task(task_id)
    return task is not None and task.status is status


async def test_result_wait_wakes_promptly_and_times_out(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    with pytest.raises(TimeoutError):
        await results.get("missing", wait=True, timeout=0.2)
    worker = make_worker(storages, max_workers=2)
    claim_loop = ClaimLoop(worker)
    async with worker:
        # The subject is an idle worker woken by the enqueue: wait until it waits for tasks.
        await wait_until(claim_loop.idle, timeout=10)
        latencies = []
        for _ in range(5):
            started = time.perf_counter()
            task_id = await q.enqueue(taskfns.noop)
            await results.get(task_id, wait=True, timeout=10)
            latencies.append(time.perf_counter() - started)
    assert sorted(latencies)[2] < 0.5, latencies


async def test_events_follow_the_life_cycle(storages: Storages) -> None:
    assert storages.events is not None, "every conformance spec names an event storage"
    q, events = storages.queue, storages.events
    async with make_worker(storages) as worker:
        ok = await q.enqueue(taskfns.noop)
        await storages.results.get(ok, wait=True, timeout=10)
        await worker.flush_events()
    found = await events.get_events(task_id=ok)
    assert [e.type for e in found] == [EventType.EXECUTING, EventType.COMPLETE]
    assert found[1].duration is not None and found[1].worker_id == worker.worker_id
    assert found[0].timestamp <= found[1].timestamp
    assert await events.get_events(task_id=ok, event_type="complete") == [found[1]]
    assert await events.get_events(since=utcnow()) == []
    assert len(await events.get_events(limit=1)) == 1


async def test_bad_tasks_fail_and_the_worker_goes_on(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    missing = await q.enqueue("no_such_module_xyz:func")
    attr = await q.enqueue("taskfns:no_such_function")
    now = utcnow()
    corrupt = Task(
        id="corrupt-" + storages.project,
        func_name="taskfns:noop",
        payload=b"\xc1\xff garbage",
        created_at=now,
        run_at=now,
        max_retries=3,
    )
    await q._insert([corrupt])
    good = await q.enqueue(taskfns.add, args=(1, 1))
    async with make_worker(storages, max_workers=1):
        assert (await results.get(good, wait=True, timeout=10)).unwrap() == 2
        res_missing = await results.get(missing, wait=True, timeout=10)
        res_attr = await results.get(attr, wait=True, timeout=10)
        res_corrupt = await results.get(corrupt.id, wait=True, timeout=10)
    assert (
        res_missing.status is TaskStatus.FAILED
        and "no_such_module_xyz" in res_missing.error.message
    )
    assert "no_such_function" in res_attr.error.message
    assert res_corrupt.status is TaskStatus.FAILED and "corrupt" in res_corrupt.error.message
    assert res_corrupt.attempts == 1  # not retried: a broken payload will not heal


async def test_many_tasks_each_run_once(storages: Storages, tmp_path: Path) -> None:
    q = storages.queue
    log = tmp_path / "runs.log"
    await q.enqueue_many([{"func": taskfns.record, "args": (str(log), i)} for i in range(300)])
    async with make_worker(storages, "thread", max_workers=8) as worker:
        await worker.join(timeout=60)
    runs = sorted(int(x) for x in log.read_text().split())
    assert runs == list(range(300))


def _spawn_worker(
    storages: Storages,
    lease_timeout: float = 30.0,
    max_workers: int = 4,
    short_task: float | None = None,
) -> subprocess.Popen:
    """A worker process; ``short_task``: the mean run time under which it claims ahead."""
    data = json.dumps(storages.spec.as_data(storages.project))
    return subprocess.Popen(
        [
            sys.executable,
            str(TESTS_DIR / "run_worker.py"),
            data,
            "async",
            str(lease_timeout),
            str(max_workers),
            *([] if short_task is None else [str(short_task)]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _sigkill_worker_mid_task(storages: Storages, marker: Path) -> None:
    """A worker process (1 s leases) SIGKILLed once its task has created ``marker``."""
    proc = _spawn_worker(storages, lease_timeout=1.0)
    try:
        await wait_until(marker.exists, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_process(proc)


@pytest.mark.slow
async def test_three_worker_processes_run_each_task_once(
    mp_storages: Storages, tmp_path: Path
) -> None:
    storages = mp_storages
    q = storages.queue
    log = tmp_path / "runs.log"
    procs = [_spawn_worker(storages) for _ in range(3)]
    try:
        await q.enqueue_many([{"func": taskfns.record, "args": (str(log), i)} for i in range(600)])
        await wait_until(lambda: _count_is(q, TaskStatus.SUCCESS, 600), timeout=120, interval=0.1)
    finally:
        for proc in procs:
            stop_process(proc)
    runs = sorted(int(x) for x in log.read_text().split())
    assert runs == list(range(600))
    for proc in procs:
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""


async def _count_is(q, status: TaskStatus, n: int) -> bool:
    return await q.count(status=status) == n


@pytest.mark.slow
async def test_sigkilled_worker_loses_nothing(mp_storages: Storages, tmp_path: Path) -> None:
    storages = mp_storages
    q, results = storages.queue, storages.results
    marker = tmp_path / "started"
    task_id = await q.enqueue(taskfns.block_until_killed, args=(str(marker),), max_retries=1)
    await _sigkill_worker_mid_task(storages, marker)
    assert (await q.get_task(task_id)).status is TaskStatus.RUNNING
    async with make_worker(storages, lease_timeout=1.0):
        result = await results.get(task_id, wait=True, timeout=30)
    assert result.unwrap() == "second run" and result.attempts == 2


@pytest.mark.slow
async def test_poison_task_ends_failed(mp_storages: Storages, tmp_path: Path) -> None:
    storages = mp_storages
    q, results = storages.queue, storages.results
    marker = tmp_path / "started"
    task_id = await q.enqueue(taskfns.block_until_killed, args=(str(marker),), max_retries=0)
    await _sigkill_worker_mid_task(storages, marker)
    async with make_worker(storages, lease_timeout=1.0):
        result = await results.get(task_id, wait=True, timeout=30)
    assert result.status is TaskStatus.FAILED and result.error.type == "WorkerLost"
    assert result.attempts == 2


@pytest.mark.slow
async def test_killed_worker_costs_no_attempt_of_tasks_claimed_ahead(
    mp_storages: Storages, tmp_path: Path
) -> None:
    """Tasks claimed ahead that never started come back from a SIGKILLed worker with no
    attempt spent: with no retries they still run (they ended FAILED "WorkerLost" before)."""
    storages = mp_storages
    q, results = storages.queue, storages.results
    marker = tmp_path / "started"
    proc = _spawn_worker(storages, lease_timeout=1.0, max_workers=1, short_task=5.0)
    try:
        first = await q.enqueue(taskfns.add, args=(1, 1))
        assert (await results.get(first, wait=True, timeout=30)).unwrap() == 2
        blocker = await q.enqueue(taskfns.block_until_killed, args=(str(marker),), max_retries=1)
        ahead = [await q.enqueue(taskfns.add, args=(i, i), max_retries=0) for i in range(2)]
        await wait_until(marker.exists, timeout=30)
        for task_id in ahead:  # claimed ahead behind the blocker, not started
            await wait_until(lambda i=task_id: _status_is(q, i, TaskStatus.RUNNING), timeout=10)
            assert (await q.get_task(task_id)).attempts == 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_process(proc)
    async with make_worker(storages, lease_timeout=1.0, max_workers=2):
        for i, task_id in enumerate(ahead):
            result = await results.get(task_id, wait=True, timeout=30)
            assert result.unwrap() == 2 * i and result.attempts == 1
        result = await results.get(blocker, wait=True, timeout=30)
        assert result.unwrap() == "second run" and result.attempts == 2


@pytest.mark.slow
async def test_poison_task_claimed_ahead_ends_failed(mp_storages: Storages, tmp_path: Path) -> None:
    """A task claimed ahead counts its attempt once it starts: if it then kills its worker, it
    still ends FAILED when its attempts are spent."""
    storages = mp_storages
    q, results = storages.queue, storages.results
    started, gate, marker = tmp_path / "started", tmp_path / "gate", tmp_path / "poison"
    proc = _spawn_worker(storages, lease_timeout=1.0, max_workers=1, short_task=5.0)
    try:
        first = await q.enqueue(taskfns.add, args=(1, 1))
        assert (await results.get(first, wait=True, timeout=30)).unwrap() == 2
        await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        poison = await q.enqueue(taskfns.block_until_killed, args=(str(marker),), max_retries=0)
        await wait_until(started.exists, timeout=30)
        await wait_until(lambda: _status_is(q, poison, TaskStatus.RUNNING), timeout=10)
        assert (await q.get_task(poison)).attempts == 0  # claimed ahead
        gate.write_text("open")
        await wait_until(marker.exists, timeout=30)
        await wait_until(lambda: _attempts_are(q, poison, 1), timeout=10)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_process(proc)
    async with make_worker(storages, lease_timeout=1.0):
        result = await results.get(poison, wait=True, timeout=30)
    assert result.status is TaskStatus.FAILED and result.error.type == "WorkerLost"
    assert result.attempts == 2


async def _attempts_are(q, task_id: str, attempts: int) -> bool:
    task = await q.get_task(task_id)
    return task is not None and task.attempts == attempts


async def test_delayed_task_runs_on_time_with_a_long_poll_interval(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    worker = make_worker(storages, poll_interval=30)
    claim_loop = ClaimLoop(worker)
    async with worker:
        # Idle first, waiting up to its 30 s poll: only the task's run_at can wake it in time.
        await wait_until(claim_loop.idle, timeout=10)
        started = time.perf_counter()
        task_id = await q.enqueue(taskfns.noop, run_in=0.3)
        await results.get(task_id, wait=True, timeout=10)
        waited = time.perf_counter() - started
    assert 0.25 <= waited < 2.0, waited


@pytest.fixture
def short_tasks_below(monkeypatch: pytest.MonkeyPatch):
    """Set the mean run time under which workers claim ahead (a loaded test machine can take
    50 ms for a task that does nothing)."""

    def set_threshold(seconds: float) -> None:
        monkeypatch.setattr(claiming, "_SHORT_TASK", seconds)

    return set_threshold


async def test_claims_ahead_only_while_tasks_are_short(
    storages: Storages, tmp_path: Path, short_tasks_below
) -> None:
    """A worker whose tasks are short holds claimed tasks beyond its slots; they stay leased,
    a cancel stops one before it starts, and one long task turns claiming ahead off."""
    short_tasks_below(5.0)
    q, results = storages.queue, storages.results
    started, gate = tmp_path / "started", tmp_path / "gate"
    log = str(tmp_path / "ran.log")
    worker = make_worker(storages, "thread", max_workers=1, lease_timeout=1.5)
    claim_loop = ClaimLoop(worker)
    async with worker:
        first = await q.enqueue(taskfns.add, args=(1, 1))
        assert (await results.get(first, wait=True, timeout=10)).unwrap() == 2
        # Short so far: while the blocker runs, the next task is claimed ahead (how many more
        # depends on the measured run time; at least one).
        blocker = await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        waiting = [await q.enqueue(taskfns.record, args=(log, i)) for i in range(2)]
        await wait_until(lambda: _status_is(q, waiting[0], TaskStatus.RUNNING), timeout=10)
        await wait_until(started.exists, timeout=10)
        assert await q.cancel(waiting[0])
        cancelled = await results.get(waiting[0], wait=True, timeout=10)
        assert cancelled.status is TaskStatus.CANCELLED
        short_tasks_below(0.05)  # the blocker has run longer than that
        gate.write_text("open")
        assert (await results.get(waiting[1], wait=True, timeout=10)).unwrap() == 1
        assert (await results.get(blocker, wait=True, timeout=10)).ok
        # The blocker was long: now the worker claims only for its free slot.
        started.unlink()
        gate.unlink()
        blocker = await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        later = [await q.enqueue(taskfns.record, args=(log, 10 + i)) for i in range(2)]
        await wait_until(started.exists, timeout=10)
        # Claimed all it will: the loop waits for its only slot (a wait begun after the blocker
        # was claimed, since it started), so nothing more is claimed before the gate opens.
        await wait_until(claim_loop.full, timeout=10)
        assert await q.count(status=TaskStatus.RUNNING) == 1
        assert await q.count(status=TaskStatus.PENDING) == 2
        gate.write_text("open")
        for task_id in later:
            assert (await results.get(task_id, wait=True, timeout=10)).ok
        await worker.join(timeout=10)
    assert sorted(int(line) for line in Path(log).read_text().split()) == [1, 10, 11]


async def test_graceful_stop_hands_back_tasks_claimed_ahead(
    storages: Storages, tmp_path: Path, short_tasks_below
) -> None:
    """Grace over with tasks claimed ahead still waiting: they go back to the queue at once
    with the running one (with no attempt spent), and another worker runs them all."""
    short_tasks_below(5.0)
    q, results = storages.queue, storages.results
    started, gate = tmp_path / "started", tmp_path / "gate"
    worker = make_worker(storages, "thread", max_workers=1)
    await worker.start()
    first = await q.enqueue(taskfns.add, args=(1, 1))
    assert (await results.get(first, wait=True, timeout=10)).unwrap() == 2
    blocker = await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)), max_retries=1)
    ahead = [await q.enqueue(taskfns.add, args=(i, i)) for i in range(2)]
    await wait_until(lambda: _status_is(q, ahead[0], TaskStatus.RUNNING), timeout=10)
    await wait_until(started.exists, timeout=10)
    stopping = asyncio.ensure_future(worker.stop(timeout=0.2))
    # Handed back with the blocker (its thread runs on, abandoned, until the gate opens).
    await wait_until(lambda: _count_is(q, TaskStatus.PENDING, 3), timeout=10)
    gate.write_text("open")
    await stopping
    assert await q.count(status=TaskStatus.RUNNING) == 0
    for task_id in ahead:  # never started: no attempt spent
        assert (await q.get_task(task_id)).attempts == 0
    async with make_worker(storages, max_workers=2) as again:
        for task_id in ahead:
            result = await results.get(task_id, wait=True, timeout=10)
            assert result.ok and result.attempts == 1
        assert (await results.get(blocker, wait=True, timeout=10)).ok
        await again.join(timeout=10)


async def test_claim_ahead_off_claims_only_for_free_slots(
    storages: Storages, tmp_path: Path, short_tasks_below
) -> None:
    short_tasks_below(5.0)  # so that only claim_ahead=False keeps it from claiming ahead
    q, results = storages.queue, storages.results
    started, gate = tmp_path / "started", tmp_path / "gate"
    worker = make_worker(storages, "thread", max_workers=1, claim_ahead=False)
    claim_loop = ClaimLoop(worker)
    async with worker:
        first = await q.enqueue(taskfns.add, args=(1, 1))
        assert (await results.get(first, wait=True, timeout=10)).unwrap() == 2
        await q.enqueue(taskfns.wait_for_gate, args=(str(started), str(gate)))
        others = [await q.enqueue(taskfns.add, args=(i, i)) for i in range(2)]
        await wait_until(started.exists, timeout=10)
        await wait_until(claim_loop.full, timeout=10)  # claimed all it will (see above)
        assert await q.count(status=TaskStatus.RUNNING) == 1
        gate.write_text("open")
        for task_id in others:
            assert (await results.get(task_id, wait=True, timeout=10)).ok
        await worker.join(timeout=10)
