"""Without a queue order, every backend serves all queues alike: priority (higher first), then
enqueue order across queues; a later-named queue is not starved by an earlier-named one."""

from __future__ import annotations

from pathlib import Path

import taskfns
from conftest import Storages

from omniq.workers import AsyncThreadPoolWorker

# (queue, priority) in enqueue order; "z" is older than "a" and must not wait for it.
ENQUEUED = [("z", 0), ("z", 0), ("a", 0), ("z", 3), ("a", 0), ("z", 0), ("a", 3), ("a", 0)]
EXPECTED = [3, 6, 0, 1, 2, 4, 5, 7]  # indexes into ENQUEUED: priority desc, then enqueue order


async def test_claims_interleave_queues_by_priority_then_enqueue_order(
    storages: Storages,
) -> None:
    q = storages.queue
    ids = [
        await q.enqueue(taskfns.noop, queue_name=name, priority=priority)
        for name, priority in ENQUEUED
    ]
    claimed = []
    while len(claimed) < len(ids):
        batch = await q.claim("w", limit=1)
        assert batch, f"claims stopped after {len(claimed)} tasks"
        claimed += [t.id for t in batch]
    assert claimed == [ids[i] for i in EXPECTED]


async def test_one_claim_returns_tasks_of_several_queues_in_order(storages: Storages) -> None:
    q = storages.queue
    ids = [
        await q.enqueue(taskfns.noop, queue_name=name, priority=priority)
        for name, priority in ENQUEUED
    ]
    claimed = [t.id for t in await q.claim("w", limit=len(ids))]
    assert claimed == [ids[i] for i in EXPECTED]


async def test_a_worker_without_queue_order_does_not_starve_a_later_named_queue(
    storages: Storages, tmp_path: Path
) -> None:
    q = storages.queue
    log = str(tmp_path / "order.log")
    for i, (name, priority) in enumerate(ENQUEUED):
        await q.enqueue(taskfns.record, args=(log, i), queue_name=name, priority=priority)
    async with AsyncThreadPoolWorker(
        queue=q, result_store=storages.results, max_workers=1, poll_interval=0.05
    ) as worker:
        await worker.join(timeout=20)
    assert [int(line) for line in Path(log).read_text().split()] == EXPECTED
