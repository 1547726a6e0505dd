"""The scheduler: schedules stored as records in the task-queue backend, fired exactly once.

Any number of schedulers (inside workers, facades or on their own) may run against one backend.
Each run of a schedule is claimed with a compare-and-set on the schedule's record, so only one
scheduler fires it:

1. swap the record to its next state (next fire time, run count) with ``pending_task_id`` set to
   the id of the task about to be stored;
2. store that task, with an idempotency key made from the schedule id and the run's time;
3. swap the record again to clear ``pending_task_id``.

A scheduler that dies after 1 leaves ``pending_task_id`` behind; after ``_RECOVER_AFTER`` any
scheduler stores the task if it does not exist yet (the key keeps a late original from adding a
second live copy) and clears the mark. So each run is enqueued exactly once, also across
crashes; a run is never enqueued twice unless a scheduler stalls for longer than
``_RECOVER_AFTER`` between steps 1 and 2 *and* the recovered task has finished meanwhile.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from omniq._sync import as_async
from omniq._tasks import cancel_and_wait, wait_within
from omniq.errors import ConfigError, SignatureError
from omniq.models import (
    EventType,
    Schedule,
    ScheduleStatus,
    Task,
    TaskEvent,
    TaskStatus,
    utcnow,
)
from omniq.queue.base import enqueued_event, new_id
from omniq.scheduling.timing import check_timing, first_run, next_run, resumed_run

__all__ = ["AsyncScheduler"]

logger = logging.getLogger("omniq.scheduler")

KIND = "schedule"
_RECOVER_AFTER = timedelta(seconds=30)
_RECENT_RUNS = 100  # task ids kept per schedule for get_result(schedule_id=..., kind="all")
_MAX_TICK = 1.0  # seconds: how soon a new or changed schedule is noticed by a running loop
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Schedule)


class AsyncScheduler:
    """Defines schedules and fires them (``start()`` runs the firing loop in the background)."""

    def __init__(
        self, queue: Any, *, event_store: Any | None = None, tick: float = _MAX_TICK
    ) -> None:
        """
        Args:
            queue: the task queue (either twin) whose backend holds the schedules.
            event_store: where SCHEDULE_PAUSED/RESUMED go, and the fired tasks' ENQUEUED when
                the queue records none itself.
            tick: the longest wait between looks at the schedules.
        """
        if queue is None:
            raise ConfigError("queue: a task queue is required")
        if not tick > 0:
            raise ConfigError(f"tick must be > 0 seconds, got {tick!r}")
        self.queue = as_async(queue)
        self.event_store = as_async(event_store) if event_store is not None else None
        self.tick = float(tick)
        self._loop_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # --- defining ------------------------------------------------------------------------------

    async def add(
        self,
        func: Callable[..., Any] | str,
        func_args: Mapping[str, Any] | None = None,
        *,
        args: Sequence[Any] = (),
        cron: str | None = None,
        interval: timedelta | float | None = None,
        run_at: datetime | None = None,
        timezone: str | None = None,
        queue_name: str = "default",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        max_runs: int | None = None,
        catch_up: bool = False,
        schedule_id: str | None = None,
        **options: Any,
    ) -> str:
        """Store a schedule and return its id.

        ``options`` are the fired tasks' enqueue options (``priority``, ``ttl``, ``result_ttl``,
        ``max_retries``, ``retry_delay``, ``timeout``). With a ``schedule_id`` that exists, the
        definition is replaced (its status and run count are kept): apps can define their
        schedules at every start.
        """
        unknown = set(options) - _TASK_OPTIONS
        if unknown:
            raise ConfigError(
                f"schedule: unknown option(s) {sorted(unknown)}; "
                f"allowed: {sorted(_TASK_OPTIONS | {'cron', 'interval', 'run_at'})}"
            )
        seconds, run_at, start_at, end_at = check_timing(
            cron=cron,
            interval=interval,
            run_at=run_at,
            timezone=timezone,
            start_at=start_at,
            end_at=end_at,
            max_runs=max_runs,
        )
        if schedule_id is not None and (not isinstance(schedule_id, str) or not schedule_id):
            raise ConfigError(f"schedule_id must be a non-empty str, got {schedule_id!r}")
        sample = self.queue.build_task(func, func_args, args=args, queue_name=queue_name, **options)
        schedule_id = schedule_id or uuid.uuid4().hex
        serializer, project = self.queue.serializer, self.queue.project_name
        now = utcnow()
        schedule = Schedule(
            id=schedule_id,
            func_name=sample.func_name,
            payload=serializer.seal(
                serializer.unseal(sample.payload, "task", project, sample.id),
                "schedule",
                project,
                schedule_id,
            ),
            queue_name=queue_name,
            cron=cron,
            interval=seconds,
            run_at=run_at,
            timezone=timezone,
            start_at=start_at,
            end_at=end_at,
            max_runs=max_runs,
            catch_up=bool(catch_up),
            created_at=now,
            options={
                "priority": sample.priority,
                "ttl": (sample.expires_at - sample.run_at).total_seconds()
                if sample.expires_at is not None
                else None,
                "result_ttl": sample.result_ttl,
                "max_retries": sample.max_retries,
                "retry_delay": sample.retry_delay,
                "timeout": sample.timeout,
            },
        )
        timing_of = _timing
        while True:
            stored = await self._read(schedule.id)
            if stored is None:
                new = schedule.evolve(next_run_at=first_run(schedule, now))
                new = _finish_if_over(new)
                if await self.queue.swap_record(KIND, new.id, _encoder.encode(new), 0):
                    break
                continue
            version, old = stored
            new = schedule.evolve(
                status=old.status,
                run_count=old.run_count,
                created_at=old.created_at,
                last_run_at=old.last_run_at,
                pending_task_id=old.pending_task_id,
                pending_since=old.pending_since,
                recent_task_ids=old.recent_task_ids,
                next_run_at=old.next_run_at
                if timing_of(old) == timing_of(schedule)
                else first_run(schedule, now),
            )
            if old.status is ScheduleStatus.FINISHED and timing_of(old) != timing_of(schedule):
                new = new.evolve(status=ScheduleStatus.ACTIVE, run_count=0)
            new = _finish_if_over(new)
            if await self.queue.swap_record(KIND, new.id, _encoder.encode(new), version):
                break
        self._changed.set()
        return schedule.id

    async def get(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""
        stored = await self._read(schedule_id)
        return None if stored is None else stored[1]

    async def list(self) -> list[Schedule]:
        """Every schedule of the project, ordered by id."""
        return [schedule for _, schedule in await self._read_all_versions()]

    async def pause(self, schedule_id: str) -> bool:
        """Stop firing until resumed; False if there is no such active schedule."""
        changed = await self._update(
            schedule_id,
            lambda s: (
                s.evolve(status=ScheduleStatus.PAUSED)
                if s.status is ScheduleStatus.ACTIVE
                else None
            ),
        )
        if changed is not None:
            await self._log(changed, EventType.SCHEDULE_PAUSED)
        return changed is not None

    async def resume(self, schedule_id: str) -> bool:
        """Fire again; runs missed while paused are skipped (the next is computed from now)."""
        now = utcnow()
        changed = await self._update(
            schedule_id,
            lambda s: (
                _finish_if_over(
                    s.evolve(status=ScheduleStatus.ACTIVE, next_run_at=resumed_run(s, now))
                )
                if s.status is ScheduleStatus.PAUSED
                else None
            ),
        )
        if changed is not None:
            await self._log(changed, EventType.SCHEDULE_RESUMED)
            self._changed.set()
        return changed is not None

    async def delete(self, schedule_id: str) -> bool:
        """Remove a schedule (tasks it already enqueued stay); True if it existed."""
        return await self.queue.delete_record(KIND, schedule_id)

    # --- firing --------------------------------------------------------------------------------

    async def run_pending(self, now: datetime | None = None) -> builtins.list[str]:
        """Fire every schedule that is due; returns the ids of the tasks enqueued by this call."""
        now = now or utcnow()
        fired = []
        for version, schedule in await self._read_all_versions():
            try:
                task_id = await self._fire_if_due(version, schedule, now)
            except Exception:
                logger.exception("firing schedule %s failed; will try again", schedule.id)
                continue
            if task_id is not None:
                fired.append(task_id)
        return fired

    async def next_due(self) -> datetime | None:
        """The earliest next fire time over the active schedules."""
        times = [
            s.next_run_at
            for s in await self.list()
            if s.status is ScheduleStatus.ACTIVE and s.next_run_at is not None
        ]
        return min(times, default=None)

    def wake(self) -> None:
        """Have a running firing loop look at the schedules now (after a change)."""
        self._changed.set()

    async def start(self) -> None:
        """Run the firing loop in the background on the running event loop."""
        if self._loop_task is None:
            self._changed = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(
                self._fire_loop(), name="omniq-scheduler"
            )

    async def stop(self) -> None:
        """Stop the firing loop."""
        task, self._loop_task = self._loop_task, None
        await cancel_and_wait([task])

    async def close(self) -> None:
        """Stop the loop (the queue and event store belong to the caller)."""
        await self.stop()

    async def __aenter__(self) -> AsyncScheduler:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def _fire_loop(self) -> None:
        while True:
            try:
                await self.run_pending()
                due = await self.next_due()
            except Exception:
                logger.warning("scheduler pass failed; retrying", exc_info=True)
                due = None
            wait = self.tick
            if due is not None:
                wait = max(0.0, min(wait, (due - utcnow()).total_seconds()))
            self._changed.clear()
            await wait_within(self._changed.wait(), wait)

    async def _fire_if_due(self, version: int, schedule: Schedule, now: datetime) -> str | None:
        if schedule.pending_task_id is not None:
            if schedule.pending_since is None or now - schedule.pending_since >= _RECOVER_AFTER:
                await self._recover(schedule)
            return None
        due = schedule.next_run_at
        if schedule.status is not ScheduleStatus.ACTIVE or due is None or due > now:
            return None
        task = self._task_for(schedule, due, now)
        following = next_run(schedule, due, now)
        claimed = schedule.evolve(
            next_run_at=following,
            status=ScheduleStatus.ACTIVE if following is not None else ScheduleStatus.FINISHED,
            run_count=schedule.run_count + 1,
            last_run_at=due,
            pending_task_id=task.id,
            pending_since=now,
            recent_task_ids=(*schedule.recent_task_ids, task.id)[-_RECENT_RUNS:],
        )
        new_version = await self.queue.swap_record(
            KIND, schedule.id, _encoder.encode(claimed), version
        )
        if new_version is None:
            return None  # another scheduler fired it, or it was paused/changed meanwhile
        # The process may die here: the pending mark lets another scheduler finish the job.
        await self._store_task(task)
        await self._clear_pending(schedule.id, task.id)
        return task.id

    async def _recover(self, schedule: Schedule) -> None:
        task_id = schedule.pending_task_id
        assert task_id is not None
        if await self.queue.get_task(task_id) is None:
            due = schedule.last_run_at or utcnow()
            logger.warning(
                "schedule %s: storing run %s left pending by a lost scheduler", schedule.id, task_id
            )
            await self._store_task(self._task_for(schedule, due, utcnow(), task_id))
        await self._clear_pending(schedule.id, task_id)

    async def _store_task(self, task: Task) -> None:
        (stored_id,) = await self.queue.enqueue_tasks([task])
        if getattr(self.queue, "event_store", None) is not None:
            # The queue buffers its ENQUEUED event; off the hot path, write it before going on.
            await self.queue.flush_events()
        elif stored_id == task.id and self.event_store is not None:
            await self._log_event(enqueued_event(task, utcnow()))

    async def _clear_pending(self, schedule_id: str, task_id: str) -> None:
        await self._update(
            schedule_id,
            lambda s: (
                s.evolve(pending_task_id=None, pending_since=None)
                if s.pending_task_id == task_id
                else None
            ),
        )

    def _task_for(
        self, schedule: Schedule, due: datetime, now: datetime, task_id: str | None = None
    ) -> Task:
        options = schedule.options
        ttl = options.get("ttl")
        task_id = task_id or new_id()
        return Task(
            id=task_id,
            func_name=schedule.func_name,
            payload=self._run_payload(schedule, task_id),
            queue_name=schedule.queue_name,
            priority=options.get("priority", 0),
            status=TaskStatus.PENDING,
            created_at=now,
            run_at=now,
            expires_at=now + timedelta(seconds=ttl) if ttl is not None else None,
            result_ttl=options.get("result_ttl"),
            max_retries=options.get("max_retries", 3),
            retry_delay=options.get("retry_delay", 1.0),
            timeout=options.get("timeout"),
            key=f"omniq-schedule:{schedule.id}:{due.timestamp():.6f}",
            schedule_id=schedule.id,
        )

    def _run_payload(self, schedule: Schedule, task_id: str) -> bytes:
        """The schedule's call sealed for one of its runs (with a secret key)."""
        serializer, project = self.queue.serializer, self.queue.project_name
        try:
            body = serializer.unseal(schedule.payload, "schedule", project, schedule.id)
        except SignatureError as exc:
            # Passed on as it is: the worker refuses it, and the run ends FAILED with the reason
            # where users look, rather than a schedule that silently stops firing.
            logger.error("schedule %s: %s", schedule.id, exc)
            return schedule.payload
        return serializer.seal(body, "task", project, task_id)

    # --- storage helpers -----------------------------------------------------------------------

    async def _read(self, schedule_id: str) -> tuple[int, Schedule] | None:
        stored = await self.queue.get_record(KIND, schedule_id)
        if stored is None:
            return None
        return stored[0], _decoder.decode(stored[1])

    async def _read_all_versions(self) -> builtins.list[tuple[int, Schedule]]:
        found = []
        for key, version, data in await self.queue.list_records(KIND):
            try:
                found.append((version, _decoder.decode(data)))
            except msgspec.DecodeError:
                logger.error("schedule record %s is corrupt; skipping it", key)
        return found

    async def _update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule | None]
    ) -> Schedule | None:
        """Apply ``change`` with compare-and-set until it sticks; None if it declines."""
        while True:
            stored = await self._read(schedule_id)
            if stored is None:
                return None
            version, schedule = stored
            new = change(schedule)
            if new is None:
                return None
            if await self.queue.swap_record(KIND, schedule_id, _encoder.encode(new), version):
                return new

    async def _log(self, schedule: Schedule, kind: EventType) -> None:
        await self._log_event(
            TaskEvent(
                task_id=schedule.id,
                type=kind,
                timestamp=utcnow(),
                queue_name=schedule.queue_name,
                schedule_id=schedule.id,
            )
        )

    async def _log_event(self, event: TaskEvent) -> None:
        if self.event_store is None:
            return
        try:
            await self.event_store.log(event)
        except Exception:  # events never break scheduling
            logger.warning("writing a %s event failed", event.type, exc_info=True)


_TASK_OPTIONS = frozenset(
    {"priority", "ttl", "result_ttl", "max_retries", "retry_delay", "timeout"}
)


def _timing(schedule: Schedule) -> tuple[Any, ...]:
    return (
        schedule.cron,
        schedule.interval,
        schedule.run_at,
        schedule.timezone,
        schedule.start_at,
        schedule.end_at,
        schedule.max_runs,
        schedule.catch_up,
    )


def _finish_if_over(schedule: Schedule) -> Schedule:
    over = schedule.next_run_at is None or (
        schedule.max_runs is not None and schedule.run_count >= schedule.max_runs
    )
    if over and schedule.status is ScheduleStatus.ACTIVE:
        return schedule.evolve(status=ScheduleStatus.FINISHED, next_run_at=None)
    return schedule
