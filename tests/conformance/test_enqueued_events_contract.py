"""Every way a task is stored records exactly one ENQUEUED event: a bare queue given an event
store, the facade, a backend's queue, workflows and schedules; a failing event store never fails
an enqueue."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import taskfns
from conftest import Storages, wait_until

from omniq import AsyncOmniQ, EventStore, TaskQueue
from omniq.backend import SQLiteBackend
from omniq.models import EventType, TaskStatus
from omniq.workflows import build_workflow, call, chain


def queue_with_events(storages: Storages, event_store: Any) -> Any:
    spec = storages.spec
    args = {**spec.component_args(storages.project), "event_store": event_store}
    return spec.build(spec.queue, storages.project, args)


async def enqueued_counts(event_store: Any) -> Counter[str]:
    events = await event_store.get_events(event_type=EventType.ENQUEUED, limit=10_000)
    return Counter(e.task_id for e in events)


async def test_a_bare_queue_records_one_enqueued_per_stored_task(storages: Storages) -> None:
    events = storages.events
    queue = queue_with_events(storages, events)
    try:
        one = await queue.enqueue(taskfns.noop, queue_name="q1", key="k")
        again = await queue.enqueue(taskfns.noop, queue_name="q1", key="k")  # the live task
        many = await queue.enqueue_many([{"func": taskfns.noop}, {"func": taskfns.add}])
        tasks, _ = build_workflow(queue, chain(call(taskfns.noop), call(taskfns.noop)))
        flow = await queue.enqueue_tasks(tasks)
        await queue.flush_events()
        assert again == one
        assert await enqueued_counts(events) == Counter({i: 1 for i in [one, *many, *flow]})
        (first,) = await events.get_events(task_id=one)
        assert first.type is EventType.ENQUEUED and first.queue_name == "q1"
    finally:
        await queue.close()


async def test_the_facade_and_its_schedules_record_one_enqueued_each(storages: Storages) -> None:
    async with AsyncOmniQ(
        task_queue=storages.queue, result_store=storages.results, event_store=storages.events
    ) as oq:
        ids = [await oq.enqueue(taskfns.noop, key="once")]
        assert await oq.enqueue(taskfns.noop, key="once") == ids[0]  # no second event
        ids += await oq.enqueue_many([{"func": taskfns.noop}, {"func": taskfns.noop}])
        final = await oq.enqueue_workflow(chain(call(taskfns.noop), call(taskfns.noop)))
        sid = await oq.schedule(taskfns.noop, interval=0.05, max_runs=2)
        await oq.start_worker(poll_interval=0.05)
        schedule_runs = lambda: oq.scheduler.get(sid)  # noqa: E731

        async def fired_twice() -> bool:
            return len((await schedule_runs()).recent_task_ids) == 2

        await wait_until(fired_twice)
        await oq.get_result(final, wait=True, timeout=10)
        fired = list((await schedule_runs()).recent_task_ids)
        counts = Counter(
            e.task_id for e in await oq.get_events(event_type=EventType.ENQUEUED, limit=10_000)
        )
    stored = {t.id for t in await storages.queue.list_tasks(limit=1000)}
    assert {*ids, final, *fired} <= stored
    assert counts == Counter({i: 1 for i in stored})


async def test_a_failing_event_store_never_fails_an_enqueue(
    storages: Storages, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def log_many(self, events: list[Any]) -> None:
            raise OSError("event store down")

    queue = queue_with_events(storages, Broken())
    try:
        with caplog.at_level(logging.WARNING, logger="omniq.events"):
            task_id = await queue.enqueue(taskfns.noop)
            await queue.flush_events()
        assert (await queue.get_task(task_id)).status is TaskStatus.PENDING
        assert any("events failed" in r.getMessage() for r in caplog.records)
    finally:
        await queue.close()


def test_a_backend_wires_its_event_store_into_its_queue(tmp_path: Path) -> None:
    backend = SQLiteBackend(project_name="ev", db_path=tmp_path / "ev.db")
    with TaskQueue.from_backend(backend) as queue:
        task_id = queue.enqueue(taskfns.noop)
    with TaskQueue.from_backend(backend, event_store=None) as silent:
        silent.enqueue(taskfns.noop)
    with EventStore.from_backend(backend) as events:
        found = events.get_events(event_type=EventType.ENQUEUED)
    assert [e.task_id for e in found] == [task_id]
