"""Scheduling: the timing rules (pure functions), schedules through the facade with a running
worker, and two scheduler processes sharing one SQLite database (each run fired exactly once)."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import taskfns
from backends import embedded_specs
from conftest import TESTS_DIR, stop_process, wait_until, wait_until_sync

from omniq import OmniQ
from omniq.errors import ConfigError
from omniq.models import EventType, Schedule, ScheduleStatus, TaskResult, TaskStatus, utcnow
from omniq.queue import AsyncMemoryTaskQueue
from omniq.scheduling import AsyncScheduler
from omniq.scheduling import scheduler as scheduler_module
from omniq.scheduling.timing import check_timing, first_run, next_run, resumed_run
from omniq.workers.heartbeat import list_workers

# --- helpers -----------------------------------------------------------------------------------


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _schedule(**timing: Any) -> Schedule:
    return Schedule(id="s", func_name="taskfns:noop", payload=b"", **timing)


def _runs(schedule: Schedule, now: datetime, limit: int = 50) -> list[datetime]:
    """The fire times of a schedule made at ``now`` whose runs all fire on time."""
    times: list[datetime] = []
    due = first_run(schedule, now)
    while due is not None and len(times) < limit:
        times.append(due)
        due = next_run(schedule.evolve(run_count=len(times) - 1), due, due)
    return times


def _fire_time(task: Any) -> float:
    """The run (fire time, POSIX seconds) a scheduled task was enqueued for, from its key."""
    prefix, _, stamp = task.key.rpartition(":")
    assert prefix == f"omniq-schedule:{task.schedule_id}", task.key
    return float(stamp)


def _on_grid(stamps: list[float], anchor: float, interval: float) -> bool:
    steps = [(s - anchor) / interval for s in stamps]
    return all(abs(k - round(k)) < 1e-3 for k in steps)


_wait_for = functools.partial(wait_until_sync, timeout=60.0, interval=0.02)


# --- cron --------------------------------------------------------------------------------------


def test_cron_with_five_fields_in_utc() -> None:
    quarter = _schedule(cron="*/15 * * * *")
    assert _runs(quarter, _at(2024, 1, 3, 10, 7, 30), limit=4) == [
        _at(2024, 1, 3, 10, 15),
        _at(2024, 1, 3, 10, 30),
        _at(2024, 1, 3, 10, 45),
        _at(2024, 1, 3, 11, 0),
    ]
    mondays = _schedule(cron="0 9 * * MON")  # 2024-01-03 is a Wednesday
    assert _runs(mondays, _at(2024, 1, 3, 12), limit=2) == [
        _at(2024, 1, 8, 9),
        _at(2024, 1, 15, 9),
    ]


def test_cron_with_six_fields_takes_seconds_first() -> None:
    every_20s = _schedule(cron="*/20 * * * * *")
    assert _runs(every_20s, _at(2024, 1, 1, 10, 0, 5), limit=3) == [
        _at(2024, 1, 1, 10, 0, 20),
        _at(2024, 1, 1, 10, 0, 40),
        _at(2024, 1, 1, 10, 1, 0),
    ]
    # second 30, minute 15, hour 9 (not minute 30, hour 15, day 9)
    daily = _schedule(cron="30 15 9 * * *")
    assert _runs(daily, _at(2024, 1, 1, 10), limit=2) == [
        _at(2024, 1, 2, 9, 15, 30),
        _at(2024, 1, 3, 9, 15, 30),
    ]


def test_cron_in_a_time_zone() -> None:
    berlin = _schedule(cron="0 9 * * *", timezone="Europe/Berlin")
    assert first_run(berlin, _at(2024, 1, 15, 12)) == _at(2024, 1, 16, 8)  # CET, UTC+1
    assert first_run(berlin, _at(2024, 7, 15, 12)) == _at(2024, 7, 16, 7)  # CEST, UTC+2
    new_york = _schedule(cron="0 9 * * *", timezone="America/New_York")
    assert first_run(new_york, _at(2024, 1, 15, 12)) == _at(2024, 1, 15, 14)  # EST, UTC-5
    utc = _schedule(cron="0 9 * * *")  # no time zone: UTC
    assert first_run(utc, _at(2024, 7, 15, 12)) == _at(2024, 7, 16, 9)


def test_cron_across_daylight_saving_transitions() -> None:
    berlin = {"timezone": "Europe/Berlin"}
    # 09:00 local stays 09:00: the day the clocks go forward is 23 hours long.
    assert _runs(_schedule(cron="0 9 * * *", **berlin), _at(2024, 3, 29, 12), limit=3) == [
        _at(2024, 3, 30, 8),
        _at(2024, 3, 31, 7),
        _at(2024, 4, 1, 7),
    ]
    # 02:30 does not exist on 2024-03-31 (02:00 -> 03:00): it fires once, at the jump.
    assert _runs(_schedule(cron="30 2 * * *", **berlin), _at(2024, 3, 30, 12), limit=2) == [
        _at(2024, 3, 31, 1),
        _at(2024, 4, 1, 0, 30),
    ]
    # 02:30 happens twice on 2024-10-27 (03:00 -> 02:00): a fixed time fires once that day.
    assert _runs(_schedule(cron="30 2 * * *", **berlin), _at(2024, 10, 26, 12), limit=2) == [
        _at(2024, 10, 27, 0, 30),
        _at(2024, 10, 28, 1, 30),
    ]
    # Hourly follows real time through both transitions: no gap, no double run.
    for start in (_at(2024, 3, 30, 22, 30), _at(2024, 10, 26, 22, 30)):
        hourly = _runs(_schedule(cron="0 * * * *", **berlin), start, limit=6)
        assert [b - a for a, b in pairwise(hourly)] == [timedelta(hours=1)] * 5


def test_cron_after_downtime_fires_once_or_catches_up() -> None:
    every_5 = _schedule(cron="*/5 * * * *")
    fired, now = _at(2024, 1, 1, 12), _at(2024, 1, 1, 12, 17)
    assert next_run(every_5, fired, now) == _at(2024, 1, 1, 12, 20)
    assert next_run(every_5.evolve(catch_up=True), fired, now) == _at(2024, 1, 1, 12, 5)


# --- interval ----------------------------------------------------------------------------------


def test_interval_runs_on_a_grid() -> None:
    now = _at(2024, 5, 1, 12)
    ten = _schedule(interval=10.0)
    first = first_run(ten, now)
    assert first == now + timedelta(seconds=10)  # no start_at: one interval after creation
    # Firing late does not move the grid.
    assert next_run(ten, first, first + timedelta(seconds=3)) == first + timedelta(seconds=10)
    # After downtime one run fires (the one due at `first`), then the grid continues from now.
    late = first + timedelta(seconds=35)
    assert next_run(ten, first, late) == first + timedelta(seconds=40)
    # catch_up fires each missed run, one after another.
    assert next_run(ten.evolve(catch_up=True), first, late) == first + timedelta(seconds=10)
    # start_at anchors the grid: in the future it is the first run ...
    later = now + timedelta(hours=1)
    assert first_run(ten.evolve(start_at=later), now) == later
    # ... in the past, the first run is the grid's next slot after now.
    earlier = now - timedelta(seconds=25)
    assert first_run(ten.evolve(start_at=earlier), now) == now + timedelta(seconds=5)
    assert _on_grid([t.timestamp() for t in _runs(ten, now, limit=20)], first.timestamp(), 10)


def test_start_at_end_at_and_max_runs() -> None:
    now = _at(2024, 5, 1, 10)
    hourly = _schedule(cron="0 * * * *", start_at=_at(2024, 5, 1, 12, 30))
    assert first_run(hourly, now) == _at(2024, 5, 1, 13)
    assert first_run(hourly.evolve(start_at=_at(2024, 5, 1, 12)), now) == _at(2024, 5, 1, 12)
    t0 = now + timedelta(minutes=1)
    ten = _schedule(interval=10.0, start_at=t0)
    assert _runs(ten.evolve(end_at=t0 + timedelta(seconds=25)), now) == [
        t0 + timedelta(seconds=s) for s in (0, 10, 20)
    ]
    until_20 = _runs(ten.evolve(end_at=t0 + timedelta(seconds=20)), now)
    assert until_20[-1] == t0 + timedelta(seconds=20)  # a run due at end_at still fires
    assert len(_runs(ten.evolve(max_runs=3), now)) == 3
    assert len(_runs(hourly.evolve(max_runs=1), now)) == 1
    one_off = _schedule(run_at=t0)
    assert _runs(one_off, now) == [t0]
    assert first_run(one_off.evolve(end_at=t0 - timedelta(seconds=1)), now) is None


def test_resume_skips_the_runs_missed_while_paused() -> None:
    t0 = _at(2024, 5, 1, 12)
    ten = _schedule(interval=10.0, start_at=t0, next_run_at=t0 + timedelta(seconds=10))
    # Paused at t0+5, resumed at t0+47: t0+10 ... t0+40 are skipped; the grid is kept.
    assert resumed_run(ten, t0 + timedelta(seconds=47)) == t0 + timedelta(seconds=50)
    assert resumed_run(ten, t0 + timedelta(seconds=7)) == t0 + timedelta(seconds=10)
    cron = _schedule(cron="*/5 * * * *", next_run_at=_at(2024, 5, 1, 12, 5))
    assert resumed_run(cron, _at(2024, 5, 1, 12, 31)) == _at(2024, 5, 1, 12, 35)
    one_off = _schedule(run_at=t0, next_run_at=t0)  # a paused one-off still runs once
    assert resumed_run(one_off, t0 + timedelta(hours=1)) == t0


def test_naive_datetimes_are_taken_as_utc() -> None:
    _, run_at, start_at, end_at = check_timing(
        cron=None,
        interval=None,
        run_at=datetime(2030, 1, 1, 9),
        timezone=None,
        start_at=datetime(2029, 1, 1),
        end_at=datetime(2031, 1, 1),
        max_runs=None,
    )
    assert run_at == _at(2030, 1, 1, 9) and start_at == _at(2029, 1, 1)
    assert end_at == _at(2031, 1, 1)


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        pytest.param({}, "exactly one of cron=, interval= or run_at= .got none", id="none"),
        pytest.param(
            {"cron": "* * * * *", "interval": 5}, r"exactly one of.*got cron, interval", id="two"
        ),
        pytest.param(
            {"interval": 5, "run_at": datetime(2030, 1, 1)},
            "got interval, run_at",
            id="interval+run_at",
        ),
        pytest.param(
            {"cron": "0 9 * * *", "run_at": datetime(2030, 1, 1)}, "got cron, run_at", id="cron+at"
        ),
        pytest.param({"cron": "61 * * * *"}, "not a valid cron expression", id="minute-61"),
        pytest.param({"cron": "every day"}, "5 fields .or 6 with seconds first", id="words"),
        pytest.param({"cron": "* * * * * * *"}, "5 fields", id="seven-fields"),
        pytest.param({"cron": "@daily"}, "5 fields", id="nickname"),
        pytest.param({"cron": "0 0 30 2 *"}, "not a valid cron", id="february-30"),
        pytest.param(
            {"cron": "0 9 * * *", "timezone": "Mars/Olympus"},
            "timezone 'Mars/Olympus' is not a known IANA time zone",
            id="bad-timezone",
        ),
        pytest.param({"interval": 5, "timezone": 1}, "timezone", id="timezone-not-str"),
        pytest.param({"interval": 0}, r"interval must be > 0", id="interval-0"),
        pytest.param({"interval": -1}, r"interval must be > 0", id="interval-negative"),
        pytest.param({"interval": math.inf}, r"interval must be > 0", id="interval-inf"),
        pytest.param({"interval": 1e15}, "interval .* too long", id="interval-huge"),
        pytest.param({"interval": "5"}, "interval must be a timedelta", id="interval-str"),
        pytest.param({"interval": 5, "max_runs": 0}, "max_runs", id="max-runs-0"),
        pytest.param({"interval": 5, "start_at": "tomorrow"}, "start_at", id="start-at-str"),
        pytest.param(
            {"interval": 5, "start_at": datetime(2030, 1, 2), "end_at": datetime(2030, 1, 1)},
            "end_at .* must be after start_at",
            id="end-before-start",
        ),
        pytest.param({"interval": 5, "schedule_id": ""}, "schedule_id", id="empty-id"),
    ],
)
async def test_bad_timing_fails_at_add_with_a_clear_error(
    timing: dict[str, Any], message: str
) -> None:
    scheduler = AsyncScheduler(AsyncMemoryTaskQueue())
    with pytest.raises(ConfigError, match=message):
        await scheduler.add(taskfns.noop, **timing)
    assert await scheduler.list() == []


async def test_recent_runs_keep_the_newest_hundred() -> None:
    scheduler = AsyncScheduler(AsyncMemoryTaskQueue())
    t0 = utcnow() + timedelta(seconds=5)
    sid = await scheduler.add(taskfns.noop, interval=1, start_at=t0)
    fired = []
    for step in range(scheduler_module._RECENT_RUNS + 5):
        fired += await scheduler.run_pending(t0 + timedelta(seconds=step))
    schedule = await scheduler.get(sid)
    assert schedule.run_count == len(fired) == scheduler_module._RECENT_RUNS + 5
    assert list(schedule.recent_task_ids) == fired[-scheduler_module._RECENT_RUNS :]


# --- facade ------------------------------------------------------------------------------------


def _facade(tmp_path: Path, project: str) -> OmniQ:
    """The embedded default (SQLite queue, results and events) under ``tmp_path``."""
    return OmniQ(
        project_name=project,
        base_dir=str(tmp_path),
        worker="thread",
        worker_config={"max_workers": 2, "poll_interval": 0.05},
    )


def _tasks_of(oq: OmniQ, schedule_id: str) -> list[Any]:
    return [t for t in oq.list_tasks(limit=1000) if t.schedule_id == schedule_id]


def test_facade_schedule_runs_on_the_worker_and_keeps_results(tmp_path: Path, project: str) -> None:
    with _facade(tmp_path, project) as oq:
        idle = oq.schedule(taskfns.noop, interval=3600)
        assert oq.get_result(schedule_id=idle) is None
        assert oq.get_result(schedule_id=idle, kind="all") == []
        oq.start_worker()
        sid = oq.schedule(taskfns.add, {"a": 1, "b": 2}, interval=0.2, max_runs=3)
        _wait_for(lambda: len(oq.get_result(schedule_id=sid, kind="all")) == 3)
        schedule = oq.get_schedule(sid)
        results = oq.get_result(schedule_id=sid, kind="all")
        latest = oq.get_result(schedule_id=sid, kind="latest")
        tasks = _tasks_of(oq, sid)
        assert {s.id for s in oq.list_schedules()} == {idle, sid}
        oq.stop_worker()
    assert schedule.status is ScheduleStatus.FINISHED and schedule.run_count == 3
    assert schedule.next_run_at is None and schedule.pending_task_id is None
    assert [r.task_id for r in results] == list(schedule.recent_task_ids)  # oldest first
    assert all(r.unwrap() == 3 and r.schedule_id == sid for r in results)
    assert latest.task_id == schedule.recent_task_ids[-1]
    assert sorted(t.id for t in tasks) == sorted(schedule.recent_task_ids)
    stamps = sorted(_fire_time(t) for t in tasks)
    assert len(set(stamps)) == 3 and _on_grid(stamps, stamps[0], 0.2)


def test_get_result_latest_is_the_newest_run_that_has_a_result(
    tmp_path: Path, project: str
) -> None:
    with _facade(tmp_path, project) as oq:
        t0 = utcnow() + timedelta(seconds=5)
        sid = oq.schedule(taskfns.noop, interval=10, start_at=t0)
        runs = [oq.scheduler.run_pending(t0 + timedelta(seconds=10 * k))[0] for k in range(3)]
        for value, task_id in zip(("first", "second"), runs, strict=False):
            oq.result_store.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=value))
        assert oq.get_result(schedule_id=sid).value == "second"  # the third has none yet
        assert [r.value for r in oq.get_result(schedule_id=sid, kind="all")] == [
            "first",
            "second",
        ]
        with pytest.raises(ConfigError, match="one of them"):
            oq.get_result(runs[0], schedule_id=sid)
        with pytest.raises(ConfigError, match="one of them"):
            oq.get_result()
        with pytest.raises(ConfigError, match="kind must be"):
            oq.get_result(schedule_id=sid, kind="first")
        with pytest.raises(ConfigError, match="no schedule"):
            oq.get_result(schedule_id="nope")
        with pytest.raises(ConfigError, match="exactly one of"):
            oq.schedule(taskfns.noop, cron="* * * * *", interval=1)


def test_facade_pause_resume_and_delete(tmp_path: Path, project: str) -> None:
    interval = 0.5
    with _facade(tmp_path, project) as oq:
        oq.start_worker()
        sid = oq.schedule(taskfns.noop, interval=interval)
        _wait_for(lambda: oq.get_schedule(sid).run_count >= 2)
        assert oq.pause_schedule(sid) is True
        assert oq.pause_schedule(sid) is False  # already paused
        paused = oq.get_schedule(sid)
        assert paused.status is ScheduleStatus.PAUSED
        # Stay paused past several due times and past the worker's next look (at most one
        # scheduler tick after each due time).
        overdue = paused.next_run_at + timedelta(seconds=4 * interval + scheduler_module._MAX_TICK)
        _wait_for(lambda: utcnow() > overdue)
        assert oq.get_schedule(sid).run_count == paused.run_count
        resumed_at = utcnow()
        assert oq.resume_schedule(sid) is True
        assert oq.resume_schedule(sid) is False  # already active
        resumed = oq.get_schedule(sid)
        assert resumed.status is ScheduleStatus.ACTIVE
        assert resumed.next_run_at > resumed_at  # missed runs are not due at once
        assert _on_grid([resumed.next_run_at.timestamp()], paused.next_run_at.timestamp(), interval)
        _wait_for(lambda: oq.get_schedule(sid).run_count >= paused.run_count + 2)
        _wait_for(lambda: oq.get_schedule(sid).pending_task_id is None)
        counted = oq.get_schedule(sid).run_count
        stamps = sorted(_fire_time(t) for t in _tasks_of(oq, sid))
        events = oq.get_events(task_id=sid)
        assert oq.delete_schedule(sid) is True
        assert oq.get_schedule(sid) is None and oq.delete_schedule(sid) is False
        assert sid not in [s.id for s in oq.list_schedules()]
        assert len(_tasks_of(oq, sid)) >= counted  # the runs it enqueued stay
        oq.stop_worker()
    assert [e.type for e in events] == [EventType.SCHEDULE_PAUSED, EventType.SCHEDULE_RESUMED]
    assert all(e.schedule_id == sid for e in events)
    # Every run fired once (stored at least up to `counted`, no fire time twice) and none for a
    # due time between the last run before the pause and the resume.
    assert len(stamps) == len(set(stamps)) >= counted
    gap = (paused.last_run_at.timestamp(), resumed_at.timestamp())
    assert not [s for s in stamps if gap[0] < s <= gap[1]]
    assert len([s for s in stamps if s > gap[1]]) >= 2


# --- many processes ----------------------------------------------------------------------------


def _spawn_worker(data: str, log: Path) -> subprocess.Popen[bytes]:
    """A worker (its scheduler loop included) in its own OS process."""
    with log.open("wb") as stderr:  # a file, not a pipe: a chatty child never blocks
        return subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "run_worker.py"), data, "async", "30", "4"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


@pytest.mark.slow
async def test_two_scheduler_processes_fire_each_run_exactly_once(
    tmp_path: Path, project: str
) -> None:
    spec = embedded_specs(tmp_path)["sqlite"]  # one database file for every process
    queue, results, events = spec.make_queue(project), spec.make_results(project), None
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    data = json.dumps(spec.as_data(project))
    procs = [_spawn_worker(data, log) for log in logs]
    try:
        # Both processes run their scheduler loop before the schedule exists.
        await wait_until(lambda: _live_workers(queue, 2), timeout=40, interval=0.1)
        definer = AsyncScheduler(queue)  # defines only; the two processes fire
        start = utcnow() + timedelta(seconds=2)
        sid = await definer.add(
            taskfns.add, {"a": 1, "b": 2}, interval=0.2, start_at=start, max_runs=10
        )
        await wait_until(lambda: _finished(definer, sid), timeout=30, interval=0.1)
        await wait_until(lambda: _all_succeeded(queue, sid, 10), timeout=30, interval=0.1)
        schedule = await definer.get(sid)
        tasks = [t for t in await queue.list_tasks(limit=1000) if t.schedule_id == sid]
        events = spec.make_events(project)
        enqueued = await events.get_events(event_type=EventType.ENQUEUED, limit=10_000)
        outcomes = [await results.get(t.id) for t in tasks]
    finally:
        for proc in procs:
            stop_process(proc, timeout=30)
        for component in (queue, results, events):
            if component is not None:
                await component.close()
    assert schedule.run_count == 10 and schedule.pending_task_id is None
    ids = [t.id for t in tasks]
    assert len(ids) == len(set(ids)) == 10
    assert set(schedule.recent_task_ids) == set(ids)
    assert len({t.key for t in tasks}) == 10
    stamps = [_fire_time(t) for t in sorted(tasks, key=_fire_time)]
    # The first run is due at start_at (fired late or not); the others stay on its grid.
    assert len(set(stamps)) == 10 and stamps[0] >= start.timestamp() - 1e-6
    assert _on_grid(stamps, start.timestamp(), 0.2)
    in_fire_order = [t.id for t in sorted(tasks, key=_fire_time)]
    assert list(schedule.recent_task_ids) == in_fire_order
    assert sorted(e.task_id for e in enqueued if e.schedule_id == sid) == sorted(ids)
    assert all(r is not None and r.unwrap() == 3 for r in outcomes)
    for proc, log in zip(procs, logs, strict=True):
        text = log.read_text()
        assert proc.returncode == 0, text
        assert "left pending by a lost scheduler" not in text, text


async def _live_workers(queue: Any, n: int) -> bool:
    return len(await list_workers(queue)) >= n


async def _finished(scheduler: AsyncScheduler, schedule_id: str) -> bool:
    schedule = await scheduler.get(schedule_id)
    return schedule.status is ScheduleStatus.FINISHED and schedule.pending_task_id is None


async def _all_succeeded(queue: Any, schedule_id: str, n: int) -> bool:
    tasks = [t for t in await queue.list_tasks(limit=1000) if t.schedule_id == schedule_id]
    return len(tasks) >= n and all(t.status is TaskStatus.SUCCESS for t in tasks)
