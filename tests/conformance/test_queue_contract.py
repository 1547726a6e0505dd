"""The task-queue contract, on every backend: claims, order, leases, keys, isolation."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
import taskfns
from conftest import Storages, wait_until

from omniq.errors import ConfigError, SerializationError
from omniq.models import TaskStatus, utcnow


async def test_enqueue_stores_a_pending_task(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(
        taskfns.add, {"a": 1}, args=(2,), queue_name="default", priority=3, max_retries=1
    )
    task = await q.get_task(task_id)
    assert task is not None
    assert (task.status, task.priority, task.max_retries, task.attempts) == (
        TaskStatus.PENDING,
        3,
        1,
        0,
    )
    assert task.func_name == "taskfns:add"
    assert q.serializer.decode_call(task.payload)[1:] == ([2], {"a": 1})
    assert await q.get_task("no-such-task") is None
    assert await q.count() == 1
    assert await q.count(status=TaskStatus.PENDING) == 1
    assert await q.count(status="running") == 0


async def test_claims_by_priority_then_fifo(storages: Storages) -> None:
    q = storages.queue
    low1 = await q.enqueue(taskfns.noop, priority=0)
    high = await q.enqueue(taskfns.noop, priority=5)
    low2 = await q.enqueue(taskfns.noop, priority=0)
    mid = await q.enqueue(taskfns.noop, priority=2)
    order = []
    for _ in range(4):
        (task,) = await q.claim("w", limit=1)
        order.append(task.id)
    assert order == [high, mid, low1, low2]
    assert await q.claim("w", limit=1) == []


async def test_named_queues_in_strict_order(storages: Storages) -> None:
    q = storages.queue
    low = await q.enqueue(taskfns.noop, queue_name="low", priority=100)
    high = await q.enqueue(taskfns.noop, queue_name="high", priority=0)
    other = await q.enqueue(taskfns.noop, queue_name="other")
    claimed = await q.claim("w", queues=["high", "low"], limit=10)
    assert [t.id for t in claimed] == [high, low]
    assert [t.id for t in await q.claim("w", limit=10)] == [other]


async def test_queue_list_restricts_enqueue(spec, project) -> None:
    module, _, name = spec.queue.partition(":")
    import importlib

    cls = getattr(importlib.import_module(module), name)
    queue = cls(queues=["high", "low"], **spec.component_args(project))
    try:
        with pytest.raises(ConfigError, match="not one of"):
            await queue.enqueue(taskfns.noop, queue_name="medium")
        await queue.enqueue(taskfns.noop, queue_name="low")
        await queue.enqueue(taskfns.noop, queue_name="high")
        claimed = await queue.claim("w", limit=2)
        assert [t.queue_name for t in claimed] == ["high", "low"]
    finally:
        await queue.close()


async def test_delayed_task_waits_for_its_time(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(taskfns.noop, run_in=timedelta(seconds=0.5))
    assert await q.claim("w") == []
    assert (await q.get_task(task_id)).status is TaskStatus.PENDING

    async def claimed() -> bool:
        return bool(await q.claim("w"))

    await wait_until(claimed, timeout=5)


async def test_concurrent_claimers_never_share_a_task(storages: Storages) -> None:
    q, spec, project = storages.queue, storages.spec, storages.project
    ids = await q.enqueue_many([{"func": taskfns.noop} for _ in range(200)])
    others = [spec.make_queue(project) for _ in range(3)] if spec.multiprocess else []
    claimers = [q, *others]
    seen: list[str] = []

    async def claimer(n: int) -> None:
        queue = claimers[n % len(claimers)]
        while True:
            batch = await queue.claim(f"w{n}", limit=3)
            if not batch:
                return
            seen.extend(t.id for t in batch)

    try:
        await asyncio.gather(*(claimer(n) for n in range(16)))
    finally:
        for other in others:
            await other.close()
    assert sorted(seen) == sorted(ids)


async def test_lapsed_lease_is_claimed_again(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(taskfns.noop)
    # Long enough to outlast the next claim on slow storage (S3: a dozen requests each).
    (first,) = await q.claim("dead-worker", lease_timeout=1.0)
    assert first.attempts == 1 and first.worker_id == "dead-worker"
    assert await q.claim("other") == []

    async def reclaimed() -> list:
        return await q.claim("other", lease_timeout=30)

    result: list = []

    async def check() -> bool:
        result.extend(await reclaimed())
        return bool(result)

    await wait_until(check, timeout=5)
    assert result[0].id == task_id and result[0].attempts == 2 and result[0].worker_id == "other"
    # the dead worker's late outcome is refused
    assert await q.finish("dead-worker", [first.evolve(status=TaskStatus.SUCCESS)]) == set()
    assert await q.finish("other", [result[0].evolve(status=TaskStatus.SUCCESS)]) == {task_id}
    assert (await q.get_task(task_id)).status is TaskStatus.SUCCESS


async def test_only_a_started_claim_counts_an_attempt(storages: Storages) -> None:
    q = storages.queue
    first = await q.enqueue(taskfns.noop)
    second = await q.enqueue(taskfns.noop)
    # Claimed ahead (start=0): leased, but no attempt counted and no start time.
    ahead = await q.claim("dead", limit=2, start=0, lease_timeout=0.3)
    assert [(t.id, t.attempts, t.started_at) for t in ahead] == [
        (first, 0, None),
        (second, 0, None),
    ]
    stored = await q.get_task(first)
    assert (stored.status, stored.worker_id, stored.attempts) == (TaskStatus.RUNNING, "dead", 0)
    # The worker starts the first one and counts it; only the holder, only once.
    started = ahead[0].evolve(attempts=1, started_at=utcnow())
    assert await q.mark_started("thief", [started]) == set()
    assert await q.mark_started("dead", [started]) == {first}
    assert await q.mark_started("dead", [started]) == set()
    assert await q.mark_started("dead", [started.evolve(attempts=2)]) == set()
    stored = await q.get_task(first)
    assert stored.attempts == 1 and stored.started_at is not None
    # The worker dies: both come back, and a recovery always counts (the first one ran).
    recovered: dict = {}

    async def both_recovered() -> bool:
        for task in await q.claim("w", limit=2, start=0, lease_timeout=30):
            recovered[task.id] = task
        return len(recovered) == 2

    await wait_until(both_recovered, timeout=5)
    assert {i: t.attempts for i, t in recovered.items()} == {first: 2, second: 1}
    assert all(t.started_at is not None for t in recovered.values())
    # start=1: the first task counts, the one claimed ahead does not.
    third = await q.enqueue(taskfns.noop)
    fourth = await q.enqueue(taskfns.noop)
    claimed = await q.claim("w", limit=2, start=1, lease_timeout=30)
    assert [(t.id, t.attempts) for t in claimed] == [(third, 1), (fourth, 0)]
    assert claimed[0].started_at is not None and claimed[1].started_at is None
    # Handed back unstarted (a graceful stop): it comes back without a spent attempt.
    back = claimed[1].evolve(status=TaskStatus.PENDING, worker_id=None, lease_until=None)
    assert await q.finish("w", [back]) == {fourth}
    assert (await q.get_task(fourth)).attempts == 0
    (again,) = await q.claim("w", limit=1, lease_timeout=30)
    assert (again.id, again.attempts) == (fourth, 1)


async def test_renew_keeps_the_lease(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(taskfns.noop)
    started = time.monotonic()
    await q.claim("w", lease_timeout=0.3)
    for _ in range(4):
        assert await q.renew("w", [task_id], 0.3) == {task_id}
        assert await q.claim("thief") == []
        await asyncio.sleep(0.1)  # the subject: time passes, the renewals keep the lease
    assert time.monotonic() - started > 0.3  # held longer than one lease lasts
    assert await q.renew("thief", [task_id], 5) == set()


async def test_idempotency_key_returns_the_live_task(storages: Storages) -> None:
    q = storages.queue
    first = await q.enqueue(taskfns.noop, key="report-1")
    assert await q.enqueue(taskfns.noop, key="report-1") == first
    batch = await q.enqueue_many(
        [{"func": taskfns.noop, "key": "k2"}, {"func": taskfns.noop, "key": "k2"}]
    )
    assert batch[0] == batch[1]
    assert await q.count() == 2
    (task,) = await q.claim("w", limit=1)
    assert task.id == first
    await q.finish("w", [task.evolve(status=TaskStatus.SUCCESS)])
    assert await q.enqueue(taskfns.noop, key="report-1") != first  # a finished task frees its key


async def test_cancel_and_requeue(storages: Storages) -> None:
    q = storages.queue
    task_id = await q.enqueue(taskfns.noop)
    assert await q.cancel(task_id) is True
    assert (await q.get_task(task_id)).status is TaskStatus.CANCELLED
    assert await q.cancel(task_id) is False
    assert await q.claim("w") == []
    assert await q.requeue(task_id) is True
    task = await q.get_task(task_id)
    assert task.status is TaskStatus.PENDING and task.attempts == 0
    assert [t.id for t in await q.claim("w")] == [task_id]
    assert await q.requeue(task_id) is False  # running tasks are not requeued


async def test_list_count_purge(storages: Storages) -> None:
    q = storages.queue
    a = await q.enqueue(taskfns.noop, queue_name="a")
    b = await q.enqueue(taskfns.noop, queue_name="b")
    await q.enqueue(taskfns.noop, queue_name="b")
    assert [t.id for t in await q.list_tasks()][:2] == [a, b]
    assert len(await q.list_tasks(queue_name="b")) == 2
    assert len(await q.list_tasks(limit=1)) == 1
    assert await q.count(queue_name="b") == 2
    await q.claim("w", queues=["b"], limit=1)
    assert await q.purge("b") == 1  # the running one stays
    assert await q.count(queue_name="b") == 1
    assert await q.purge() == 1
    assert await q.count() == 1


async def test_projects_are_isolated(spec, project) -> None:
    mine, theirs = spec.make_queue(project), spec.make_queue(project + "x")
    my_results, their_results = spec.make_results(project), spec.make_results(project + "x")
    try:
        task_id = await mine.enqueue(taskfns.noop)
        assert await theirs.count() == 0
        assert await theirs.get_task(task_id) is None
        assert await theirs.claim("w", limit=10) == []
        assert await theirs.purge() == 0
        (task,) = await mine.claim("w")
        from omniq.models import TaskResult

        await my_results.put(TaskResult(task_id=task.id, status=TaskStatus.SUCCESS, value=1))
        assert await their_results.get(task.id) is None
        assert (await my_results.get(task.id)).value == 1
    finally:
        for c in (mine, theirs, my_results, their_results):
            await c.close()


async def test_payload_over_max_payload_size_fails_at_enqueue(spec, project) -> None:
    from omniq.config import Settings

    args = {**spec.component_args(project), "settings": Settings(MAX_PAYLOAD_SIZE=1000)}
    queue = spec.build(spec.queue, project, args)
    try:
        with pytest.raises(SerializationError, match=r"more than MAX_PAYLOAD_SIZE \(1,000 bytes"):
            await queue.enqueue(taskfns.noop, args=("x" * 1000,))
        await queue.enqueue(taskfns.noop, args=("x" * 900,))
        assert await queue.count() == 1
    finally:
        await queue.close()


async def test_bad_input_fails_at_enqueue(storages: Storages) -> None:
    q = storages.queue
    gen = (i for i in range(3))
    with pytest.raises(SerializationError, match="argument 'items'"):
        await q.enqueue(taskfns.noop, {"items": gen})
    with pytest.raises(ConfigError, match="priority"):
        await q.enqueue(taskfns.noop, priority="high")
    with pytest.raises(ConfigError, match="ttl"):
        await q.enqueue(taskfns.noop, ttl=-1)
    for field in ("ttl", "result_ttl", "retry_delay", "timeout", "run_in"):
        for nonsense in (float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=f"{field} must be a finite number"):
                await q.enqueue(taskfns.noop, **{field: nonsense})
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(SerializationError, match="nested too deeply"):
        await q.enqueue(taskfns.noop, args=(deep,))
    with pytest.raises(ConfigError, match="run_at or run_in"):
        from omniq.models import utcnow

        await q.enqueue(taskfns.noop, run_at=utcnow(), run_in=1)
    with pytest.raises(SerializationError, match="import path"):
        await q.enqueue("no_module_separator")
    with pytest.raises(ConfigError, match="unknown option"):
        await q.enqueue_many([{"func": taskfns.noop, "colour": "red"}])
    assert await q.count() == 0
