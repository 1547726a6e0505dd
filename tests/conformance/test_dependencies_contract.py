"""Dependencies, workflows and maintenance on every backend: WAITING until dependencies succeed,
cancellation cascades, chain/group/chord results, crash mid-workflow, TTL expiry sweeps."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import taskfns
from conftest import Storages, wait_until
from test_worker_contract import _sigkill_worker_mid_task, make_worker

from omniq.errors import ConfigError
from omniq.maintenance import Maintenance
from omniq.models import EventType, TaskStatus, utcnow
from omniq.workflows import build_workflow, call, chain, chord, group


async def _status(q, task_id: str) -> TaskStatus:
    return (await q.get_task(task_id)).status


async def test_a_dependent_waits_then_runs(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    first = await q.enqueue(taskfns.add, {"a": 1, "b": 1}, run_in=timedelta(seconds=0.3))
    second = await q.enqueue(taskfns.add, {"a": 2, "b": 2}, depends_on=[first])
    assert await _status(q, second) is TaskStatus.WAITING
    assert [t.id for t in await q.claim("w", limit=10)] == []  # nothing due yet, none waiting
    async with make_worker(storages, max_workers=4):
        done = await results.get(second, wait=True, timeout=20)
    before = await results.get(first)
    assert done.unwrap() == 4 and done.started_at >= before.finished_at
    # A dependency that already succeeded releases at enqueue.
    third = await q.enqueue(taskfns.noop, depends_on=[first, second])
    assert await _status(q, third) is TaskStatus.PENDING


async def test_failure_cancels_dependents_transitively(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    bad = await q.enqueue(taskfns.fail, max_retries=0)
    child = await q.enqueue(taskfns.noop, depends_on=[bad])
    grandchild = await q.enqueue(taskfns.noop, depends_on=[child])
    async with make_worker(storages):
        last = await results.get(grandchild, wait=True, timeout=20)
    assert last.status is TaskStatus.CANCELLED and last.error.type == "DependencyFailed"
    assert child in last.error.message
    middle = await results.get(child)
    assert middle.status is TaskStatus.CANCELLED and bad in middle.error.message
    assert await _status(q, child) is TaskStatus.CANCELLED
    if storages.events is not None:
        await wait_until(lambda: _has_event(storages, grandchild, EventType.CANCELLED))


async def _has_event(storages: Storages, task_id: str, kind: EventType) -> bool:
    return any(e.type is kind for e in await storages.events.get_events(task_id=task_id))


async def test_unknown_dependency_is_refused(storages: Storages) -> None:
    with pytest.raises(ConfigError, match="no task with id nope"):
        await storages.queue.enqueue(taskfns.noop, depends_on=["nope"])
    with pytest.raises(ConfigError, match="list of task ids"):
        await storages.queue.enqueue(taskfns.noop, depends_on="abc")
    assert await storages.queue.count() == 0


async def _run(storages: Storages, workflow) -> object:
    tasks, final_id = build_workflow(storages.queue, workflow)
    await storages.queue.enqueue_tasks(tasks)
    async with make_worker(storages, "thread", max_workers=4):
        return await storages.results.get(final_id, wait=True, timeout=30)


async def test_chain_passes_each_result_on(storages: Storages) -> None:
    result = await _run(
        storages,
        chain(
            call(taskfns.add, {"a": 1, "b": 2}), call(taskfns.add, {"b": 10}), call("builtins:str")
        ),
    )
    assert result.unwrap() == "13"


async def test_group_and_chord_collect_results_in_order(storages: Storages) -> None:
    members = [call(taskfns.add, {"a": i, "b": 100}, priority=i) for i in range(6)]
    assert (await _run(storages, group(members))).unwrap() == [100 + i for i in range(6)]
    nested = chord(
        [
            group(call(taskfns.add, {"a": 1, "b": 1}), call(taskfns.add, {"a": 2, "b": 2})),
            chain(call(taskfns.add, {"a": 3, "b": 3}), call(taskfns.add, {"b": 1})),
        ],
        call("builtins:repr"),
    )
    assert (await _run(storages, nested)).unwrap() == "[[2, 4], 7]"


async def test_a_failed_step_cancels_the_rest_of_the_workflow(storages: Storages) -> None:
    result = await _run(
        storages,
        chain(call(taskfns.noop), call(taskfns.fail, max_retries=0), call(taskfns.noop)),
    )
    assert result.status is TaskStatus.CANCELLED


@pytest.mark.slow
async def test_a_worker_killed_mid_workflow_loses_nothing(
    mp_storages: Storages, tmp_path: Path
) -> None:
    storages = mp_storages
    marker = tmp_path / "started"
    tasks, final_id = build_workflow(
        storages.queue,
        chain(
            call(taskfns.add, {"a": 1, "b": 1}),
            call(taskfns.relay_after_kill, {"marker": str(marker)}, max_retries=2),
            call("builtins:str.upper"),
        ),
    )
    await storages.queue.enqueue_tasks(tasks)
    await _sigkill_worker_mid_task(storages, marker)
    async with make_worker(storages, lease_timeout=1.0):
        result = await storages.results.get(final_id, wait=True, timeout=30)
    assert result.unwrap() == "2:SECOND RUN"


async def test_maintenance_expires_unclaimed_tasks(storages: Storages) -> None:
    q = storages.queue
    stale = await q.enqueue(taskfns.noop, queue_name="nobody", ttl=0.05)
    fresh = await q.enqueue(taskfns.noop, queue_name="nobody", ttl=60)
    dependent = await q.enqueue(taskfns.noop, depends_on=[stale], ttl=0.05)
    await asyncio.sleep(0.1)  # the TTL itself must pass: time is the subject here
    emitted = []
    upkeep = Maintenance(q, storages.results, emit=emitted.append)
    assert await upkeep.expire_overdue() == 2
    assert await _status(q, stale) is TaskStatus.EXPIRED
    assert await _status(q, dependent) is TaskStatus.EXPIRED
    assert await _status(q, fresh) is TaskStatus.PENDING
    result = await storages.results.get(stale)
    assert result.status is TaskStatus.EXPIRED and result.error.type == "TaskExpired"
    assert {e.type for e in emitted} == {EventType.EXPIRED}
    assert await upkeep.expire_overdue() == 0


async def test_maintenance_deletes_old_events(storages: Storages) -> None:
    if storages.events is None:
        pytest.skip("this backend has no event storage of its own")
    from omniq.models import TaskEvent

    old = utcnow() - timedelta(days=10)
    await storages.events.log_many(
        [
            TaskEvent(task_id="old", type=EventType.ENQUEUED, timestamp=old),
            TaskEvent(task_id="new", type=EventType.ENQUEUED, timestamp=utcnow()),
        ]
    )
    upkeep = Maintenance(storages.queue, None, storages.events, event_retention=86400)
    assert (await upkeep.clean_up())[1] == 1
    assert [e.task_id for e in await storages.events.get_events()] == ["new"]
