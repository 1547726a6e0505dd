"""The process-pool worker: children run tasks; timeouts, crashes and cancels cost one child."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest
import taskfns
from claimprobe import ClaimLoop
from conftest import wait_until

from omniq.errors import ConfigError
from omniq.models import TaskStatus
from omniq.queue import AsyncSQLiteTaskQueue
from omniq.serialization import Serializer
from omniq.storage import AsyncSQLiteResultStorage
from omniq.workers import AsyncProcessPoolWorker, ProcessPoolWorker


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


async def test_base_exceptions_and_unencodable_values_fail_only_their_task(stores) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, poll_interval=0.05
    ):
        first_pid = await results.get(await queue.enqueue(taskfns.pid), wait=True, timeout=30)
        exits = await queue.enqueue(taskfns.exit_now, max_retries=0)
        interrupts = await queue.enqueue(taskfns.interrupt, max_retries=0)
        generator = await queue.enqueue(taskfns.return_generator, max_retries=3)
        unprintable = await queue.enqueue(taskfns.raise_unprintable, max_retries=0)
        found = [
            await results.get(i, wait=True, timeout=30)
            for i in (exits, interrupts, generator, unprintable)
        ]
        last_pid = await results.get(await queue.enqueue(taskfns.pid), wait=True, timeout=30)
    assert [r.status for r in found] == [TaskStatus.FAILED] * 4
    assert [r.error.type for r in found] == [
        "SystemExit",
        "KeyboardInterrupt",
        "SerializationError",
        "UnprintableError",
    ]
    assert found[2].attempts == 1 and "generator" in found[2].error.message  # not retried
    assert "str()" in found[3].error.message
    assert last_pid.unwrap() == first_pid.unwrap()  # the same child ran them all


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


# --- prefetch: tasks waiting in a busy child's pipe ---------------------------------------------


def _queued_in_child(worker: AsyncProcessPoolWorker) -> int:
    """How many tasks wait in the children's pipes behind a running one (white box: it shows
    that a test sets up the situation it means to test)."""
    pool = worker._pool
    return 0 if pool is None else sum(len(child.queued) for child in pool._children)


def _waiting_in_parent(worker: AsyncProcessPoolWorker) -> int:
    """How many tasks the pool holds in the parent for an idle child (white box, as above)."""
    pool = worker._pool
    return 0 if pool is None else len(pool._waiting)


async def _exists(path: Path) -> bool:
    return path.exists()


async def _occupy_a_child(queue: AsyncSQLiteTaskQueue, tmp_path: Path) -> tuple[str, Path]:
    """A task that holds its child until its gate file is written, once it runs: its id and
    its gate."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    blocker = await queue.enqueue(
        taskfns.wait_for_gate, args=(str(started), str(gate)), max_retries=0
    )
    await wait_until(lambda: _exists(started), timeout=30)
    return blocker, gate


async def test_prefetch_runs_many_short_tasks_each_exactly_once(stores, tmp_path: Path) -> None:
    queue, results = stores
    log = tmp_path / "runs.log"
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=2, prefetch=2, poll_interval=0.05
    ) as worker:
        assert worker.max_workers == 6  # two children, each with two more tasks in its pipe
        ids = [await queue.enqueue(taskfns.record, args=(str(log), i)) for i in range(200)]
        values = [(await results.get(i, wait=True, timeout=60)).unwrap() for i in ids]
    assert values == list(range(200))
    runs = [int(line) for line in log.read_text().split()]
    assert sorted(runs) == list(range(200))  # every task ran, and none twice
    statuses = {(await queue.get_task(i)).status for i in ids}
    assert statuses == {TaskStatus.SUCCESS}


@pytest.mark.parametrize("cancelled_position", [0, 1])
async def test_prefetch_a_cancelled_queued_task_is_skipped(
    stores, tmp_path: Path, cancelled_position: int
) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue,
        result_store=results,
        max_workers=1,
        prefetch=2,
        poll_interval=0.05,
        lease_timeout=1.5,
    ) as worker:
        blocker, gate = await _occupy_a_child(queue, tmp_path)
        # Two tasks claimed while the only child runs: both wait in its pipe.
        queued = [
            await queue.enqueue(taskfns.record, args=(str(tmp_path / f"ran-{n}"), n), max_retries=0)
            for n in range(2)
        ]
        await wait_until(lambda: _queued_in_child(worker) == 2, timeout=30)
        victim = queued[cancelled_position]
        survivor = queued[1 - cancelled_position]
        assert await queue.cancel(victim)
        cancelled = await results.get(victim, wait=True, timeout=30)
        gate.write_text("go")  # the blocker ends only now: the victim was skipped, not stopped
        blocker_pid = (await results.get(blocker, wait=True, timeout=30)).unwrap()
        assert (await results.get(survivor, wait=True, timeout=30)).unwrap() == 1 - (
            cancelled_position
        )
        # The skip cost no child: the survivor ran in the blocker's child.
        after = await queue.enqueue(taskfns.pid)
        assert (await results.get(after, wait=True, timeout=30)).unwrap() == blocker_pid
    assert cancelled.status is TaskStatus.CANCELLED
    assert (await queue.get_task(victim)).status is TaskStatus.CANCELLED
    assert not (tmp_path / f"ran-{cancelled_position}").exists()  # it never ran
    assert (tmp_path / f"ran-{1 - cancelled_position}").read_text() == f"{1 - cancelled_position}\n"
    assert (await queue.get_task(survivor)).status is TaskStatus.SUCCESS


async def test_prefetch_never_queues_a_task_with_a_timeout_behind_a_busy_child(
    stores, tmp_path: Path
) -> None:
    """Both children busy, then a task with a timeout: it must wait for whichever child is idle
    first, not in the pipe of a busy one (where it would wait for that child's task)."""
    queue, results = stores
    started = [tmp_path / "started-0", tmp_path / "started-1"]
    gates = [tmp_path / "gate-0", tmp_path / "gate-1"]
    async with AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=2, prefetch=2, poll_interval=0.05
    ) as worker:
        blockers = []
        for n in range(2):  # one at a time: the first child gets the first, the second the next
            blockers.append(
                await queue.enqueue(
                    taskfns.wait_for_gate, args=(str(started[n]), str(gates[n])), max_retries=0
                )
            )
            await wait_until(lambda n=n: _exists(started[n]), timeout=30)
        timed = await queue.enqueue(taskfns.pid, timeout=60, max_retries=0)

        async def claimed() -> bool:
            return (await queue.get_task(timed)).status is TaskStatus.RUNNING

        # Claimed while both children are busy; had it been queued, then behind blocker 0.
        await wait_until(claimed, timeout=30)
        await wait_until(lambda: _waiting_in_parent(worker) == 1, timeout=30)  # in no pipe
        gates[1].write_text("go")  # only the second child becomes idle
        try:
            second_pid = (await results.get(blockers[1], wait=True, timeout=30)).unwrap()
            result = await results.get(timed, wait=True, timeout=30)
            first_still_blocked = (await queue.get_task(blockers[0])).status
        finally:
            gates[0].write_text("go")
        assert (await results.get(blockers[0], wait=True, timeout=30)).status is (
            TaskStatus.SUCCESS
        )
    assert first_still_blocked is TaskStatus.RUNNING
    assert result.status is TaskStatus.SUCCESS and result.unwrap() == second_pid


@pytest.mark.parametrize("prefetch", [0, 2])
async def test_a_task_with_a_timeout_does_not_time_out_waiting_for_a_child(
    stores, tmp_path: Path, prefetch: int
) -> None:
    """With prefetch (tasks short so far), the worker claims the task while its only child is
    busy and holds it in the parent: its timeout must not run while it waits there. Without
    prefetch, it is not claimed until the child is free."""
    queue, results = stores
    worker = AsyncProcessPoolWorker(
        queue=queue, result_store=results, max_workers=1, prefetch=prefetch, poll_interval=0.05
    )
    claim_loop = ClaimLoop(worker)
    async with worker:
        blocker, gate = await _occupy_a_child(queue, tmp_path)
        timed = await queue.enqueue(taskfns.add, args=(20, 22), timeout=1, max_retries=0)

        async def claimed() -> bool:
            return (await queue.get_task(timed)).status is TaskStatus.RUNNING

        if prefetch:
            await wait_until(claimed, timeout=30)
            await wait_until(lambda: _waiting_in_parent(worker) == 1, timeout=30)
            await asyncio.sleep(1.5)  # the subject: longer than its timeout, counted from the claim
        else:
            # Its one slot taken by the blocker, the loop waits for it: the task stays pending.
            await wait_until(claim_loop.full, timeout=30)
            assert (await queue.get_task(timed)).status is TaskStatus.PENDING
        gate.write_text("go")
        assert (await results.get(blocker, wait=True, timeout=30)).status is TaskStatus.SUCCESS
        result = await results.get(timed, wait=True, timeout=30)
    assert result.status is TaskStatus.SUCCESS, result.error
    assert result.unwrap() == 42


async def test_prefetch_keeps_max_tasks_per_child(stores) -> None:
    queue, results = stores
    async with AsyncProcessPoolWorker(
        queue=queue,
        result_store=results,
        max_workers=2,
        prefetch=2,
        max_tasks_per_child=3,
        poll_interval=0.05,
    ):
        ids = [await queue.enqueue(taskfns.pid) for _ in range(18)]
        pids = Counter([(await results.get(i, wait=True, timeout=60)).unwrap() for i in ids])
    assert sum(pids.values()) == 18
    assert max(pids.values()) <= 3, pids
    assert len(pids) >= 6


@pytest.mark.parametrize("prefetch", [-1, "2", 1.5, True, None])
async def test_prefetch_is_validated(stores, prefetch: object) -> None:
    queue, results = stores
    with pytest.raises(ConfigError, match="prefetch"):
        AsyncProcessPoolWorker(queue=queue, result_store=results, prefetch=prefetch)
    with pytest.raises(ConfigError, match="prefetch"):
        ProcessPoolWorker(queue=queue, result_store=results, prefetch=prefetch)


async def test_prefetch_zero_claims_only_for_idle_children(stores) -> None:
    queue, results = stores
    worker = AsyncProcessPoolWorker(queue=queue, result_store=results, max_workers=2, prefetch=0)
    assert worker.max_workers == 2


async def test_children_check_with_the_queue_key_not_the_worker_settings(tmp_path: Path) -> None:
    db = str(tmp_path / "keyed.db")
    keyed = Serializer("pool-secret")
    queue = AsyncSQLiteTaskQueue(db_path=db, serializer=keyed)
    results = AsyncSQLiteResultStorage(db_path=db, serializer=keyed)
    marker = tmp_path / "pwned"
    plain = AsyncSQLiteTaskQueue(db_path=db)  # no key: what anyone who can write the file makes
    forged = plain.build_task(lambda path: Path(path).touch(), args=(str(marker),))
    await plain.close()
    try:
        await queue.enqueue_tasks([forged])
        signed = await queue.enqueue(lambda x: (x, "by value"), args=(5,))
        # Built without settings=: its own settings have no key; the queue's serializer does.
        async with AsyncProcessPoolWorker(
            queue=queue, result_store=results, max_workers=1, poll_interval=0.05
        ):
            assert (await results.get(signed, wait=True, timeout=30)).unwrap() == (5, "by value")
            refused = await results.get(forged.id, wait=True, timeout=30)
        assert refused.status is TaskStatus.FAILED and refused.error.type == "SignatureError"
        assert not marker.exists()
    finally:
        await queue.close()
        await results.close()


async def test_allow_list_is_checked_before_a_child_gets_the_task(tmp_path: Path) -> None:
    db = str(tmp_path / "allow.db")
    queue, results = AsyncSQLiteTaskQueue(db_path=db), AsyncSQLiteResultStorage(db_path=db)
    try:
        ok = await queue.enqueue(taskfns.add, args=(1, 2))
        no = await queue.enqueue(taskfns.pid)
        elsewhere = await queue.enqueue("taskfns:os.getpid")
        async with AsyncProcessPoolWorker(
            queue=queue,
            result_store=results,
            max_workers=1,
            poll_interval=0.05,
            allowed_functions="taskfns:add,taskfns:os.*",
        ):
            assert (await results.get(ok, wait=True, timeout=30)).unwrap() == 3
            refused = await results.get(no, wait=True, timeout=30)
            lead_elsewhere = await results.get(elsewhere, wait=True, timeout=30)
        assert refused.error.type == "FunctionNotAllowedError"
        assert "where it is defined" in lead_elsewhere.error.message  # checked in the child
    finally:
        await queue.close()
        await results.close()
