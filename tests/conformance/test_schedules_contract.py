"""Schedules on every backend: stored in the task-queue backend, each run fired exactly once by
any number of schedulers, pause/resume with events, downtime, finishing, crash recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import taskfns
from conftest import Storages

from omniq.errors import ConfigError
from omniq.models import EventType, ScheduleStatus, TaskStatus, utcnow
from omniq.scheduling import AsyncScheduler
from omniq.scheduling import scheduler as scheduler_module


def _queues(storages: Storages, n: int) -> list:
    """n queue objects on the same storage (separate connections where the backend allows)."""
    if not storages.spec.multiprocess:
        return [storages.queue] * n
    return [storages.queue] + [storages.spec.make_queue(storages.project) for _ in range(n - 1)]


async def _close_extra(storages: Storages, queues: list) -> None:
    for q in queues:
        if q is not storages.queue:
            await q.close()


async def _scheduled_tasks(q, schedule_id: str) -> list:
    return [t for t in await q.list_tasks(limit=1000) if t.schedule_id == schedule_id]


async def test_each_run_fires_once_with_many_schedulers(storages: Storages) -> None:
    queues = _queues(storages, 4)
    try:
        schedulers = [AsyncScheduler(q) for q in queues]
        t0 = utcnow().replace(microsecond=0) + timedelta(seconds=5)
        sid = await schedulers[0].add(taskfns.add, {"a": 1, "b": 2}, interval=10, start_at=t0)
        fired = []
        for step in range(6):
            now = t0 + timedelta(seconds=10 * step, milliseconds=1)
            outcomes = await asyncio.gather(*(s.run_pending(now) for s in schedulers))
            assert sum(len(ids) for ids in outcomes) == 1, f"run {step}: {outcomes}"
            fired.extend(i for ids in outcomes for i in ids)
        tasks = await _scheduled_tasks(storages.queue, sid)
        assert sorted(t.id for t in tasks) == sorted(fired) and len(set(fired)) == 6
        assert all(t.status is TaskStatus.PENDING and t.func_name == "taskfns:add" for t in tasks)
        schedule = await schedulers[1].get(sid)
        assert schedule.run_count == 6 and schedule.pending_task_id is None
        assert schedule.next_run_at == t0 + timedelta(seconds=60)
        assert list(schedule.recent_task_ids) == fired
    finally:
        await _close_extra(storages, queues)


async def test_downtime_fires_once_or_catches_up(storages: Storages) -> None:
    scheduler = AsyncScheduler(storages.queue)
    t0 = utcnow().replace(microsecond=0) + timedelta(seconds=5)
    once = await scheduler.add(taskfns.noop, interval=10, start_at=t0)
    every = await scheduler.add(taskfns.noop, interval=10, start_at=t0, catch_up=True)
    late = t0 + timedelta(seconds=55)
    await scheduler.run_pending(late)
    assert len(await _scheduled_tasks(storages.queue, once)) == 1
    assert (await scheduler.get(once)).next_run_at == t0 + timedelta(seconds=60)
    for _ in range(8):
        await scheduler.run_pending(late)
    assert len(await _scheduled_tasks(storages.queue, once)) == 1
    assert len(await _scheduled_tasks(storages.queue, every)) == 6  # t0, t0+10, ..., t0+50
    assert (await scheduler.get(every)).next_run_at == t0 + timedelta(seconds=60)


async def test_pause_resume_delete_persist_with_events(storages: Storages) -> None:
    scheduler = AsyncScheduler(storages.queue, event_store=storages.events)
    sid = await scheduler.add(taskfns.noop, cron="*/5 * * * *", schedule_id="report")
    assert sid == "report"
    assert await scheduler.pause(sid) is True
    assert await scheduler.pause(sid) is False  # not active any more
    other = AsyncScheduler(storages.queue)  # a fresh scheduler reads the stored state
    paused = await other.get(sid)
    assert paused.status is ScheduleStatus.PAUSED
    assert await other.run_pending(utcnow() + timedelta(hours=1)) == []
    assert await scheduler.resume(sid) is True
    assert (await other.get(sid)).status is ScheduleStatus.ACTIVE
    assert [s.id for s in await other.list()] == ["report"]
    if storages.events is not None:
        events = await storages.events.get_events(task_id=sid)
        assert [e.type for e in events] == [EventType.SCHEDULE_PAUSED, EventType.SCHEDULE_RESUMED]
        assert all(e.schedule_id == sid for e in events)
    assert await scheduler.delete(sid) is True
    assert await other.get(sid) is None and await scheduler.delete(sid) is False


async def test_redefining_keeps_state_and_max_runs_finishes(storages: Storages) -> None:
    scheduler = AsyncScheduler(storages.queue)
    t0 = utcnow() + timedelta(seconds=1)
    sid = await scheduler.add(taskfns.noop, interval=1, start_at=t0, max_runs=2, schedule_id="s")
    await scheduler.run_pending(t0)
    again = await scheduler.add(  # an app restarting defines it again: same runs, same state
        taskfns.noop, interval=1, start_at=t0, max_runs=2, schedule_id="s"
    )
    assert again == sid and (await scheduler.get(sid)).run_count == 1
    await scheduler.run_pending(t0 + timedelta(seconds=1))
    done = await scheduler.get(sid)
    assert done.status is ScheduleStatus.FINISHED and done.run_count == 2
    assert await scheduler.run_pending(t0 + timedelta(seconds=10)) == []
    one_off = await scheduler.add(taskfns.noop, run_at=t0)
    assert len(await scheduler.run_pending(t0)) == 1
    assert (await scheduler.get(one_off)).status is ScheduleStatus.FINISHED


async def test_a_run_claimed_by_a_dead_scheduler_is_stored_once(
    storages: Storages, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DiesBeforeStoring(AsyncScheduler):
        async def _store_task(self, task):
            raise RuntimeError("process died here")

    class DiesBeforeClearing(AsyncScheduler):
        async def _clear_pending(self, schedule_id, task_id):
            raise RuntimeError("process died here")

    t0 = utcnow() + timedelta(seconds=2)
    healthy = AsyncScheduler(storages.queue)
    lost = await healthy.add(taskfns.noop, interval=60, start_at=t0)
    assert await DiesBeforeStoring(storages.queue).run_pending(t0) == []
    assert (await healthy.get(lost)).pending_task_id is not None
    stored = await healthy.add(taskfns.noop, interval=60, start_at=t0)
    await DiesBeforeClearing(storages.queue).run_pending(t0)  # fires `stored` (lost is pending)
    assert len(await _scheduled_tasks(storages.queue, stored)) == 1
    # Within the grace period nobody touches the pending runs.
    await healthy.run_pending(t0 + timedelta(seconds=1))
    assert len(await _scheduled_tasks(storages.queue, lost)) == 0
    later = t0 + scheduler_module._RECOVER_AFTER + timedelta(seconds=1)
    await healthy.run_pending(later)
    for sid in (lost, stored):
        tasks = await _scheduled_tasks(storages.queue, sid)
        schedule = await healthy.get(sid)
        assert len(tasks) == 1, sid
        assert schedule.pending_task_id is None and schedule.recent_task_ids == (tasks[0].id,)


async def test_bad_schedules_are_refused(storages: Storages) -> None:
    scheduler = AsyncScheduler(storages.queue)
    with pytest.raises(ConfigError, match="exactly one of"):
        await scheduler.add(taskfns.noop)
    with pytest.raises(ConfigError, match="exactly one of"):
        await scheduler.add(taskfns.noop, cron="* * * * *", interval=5)
    with pytest.raises(ConfigError, match="not a valid cron"):
        await scheduler.add(taskfns.noop, cron="61 * * * *")
    with pytest.raises(ConfigError, match="5 fields"):
        await scheduler.add(taskfns.noop, cron="* * *")
    with pytest.raises(ConfigError, match="timezone"):
        await scheduler.add(taskfns.noop, cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="interval"):
        await scheduler.add(taskfns.noop, interval=-1)
    with pytest.raises(ConfigError, match="max_runs"):
        await scheduler.add(taskfns.noop, interval=1, max_runs=0)
    with pytest.raises(ConfigError, match="unknown option"):
        await scheduler.add(taskfns.noop, interval=1, depends_on=["x"])
    assert await scheduler.list() == []
