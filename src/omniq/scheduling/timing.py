"""When a schedule fires: cron strings, intervals and one-off times (pure functions, no I/O).

Rules (documented in docs/scheduling.md):

- ``cron``: 5 fields (minute hour day month weekday) or 6 with *seconds first*
  (``"*/10 * * * * *"``: every ten seconds), evaluated in ``timezone`` (default UTC).
- ``interval``: the first run is at ``start_at``, else one interval after the schedule is made;
  later runs stay on that grid (no drift from slow firing).
- ``run_at``: one run, then the schedule is finished.
- After downtime a schedule fires once for all the runs it missed and continues on its grid
  from now; with ``catch_up=True`` it fires every missed run instead, one after another.
- Nothing fires after ``end_at``, nor after ``max_runs`` runs.
- Daylight saving time: a cron time the clock skips (spring) fires at the jump; a fixed time of
  day the clock shows twice (autumn) fires once; hourly and finer crons follow real time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from omniq.errors import ConfigError
from omniq.models import Schedule

__all__ = ["check_timing", "first_run", "next_run", "resumed_run"]


def check_timing(
    *,
    cron: str | None,
    interval: timedelta | float | None,
    run_at: datetime | None,
    timezone: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    max_runs: int | None,
) -> tuple[float | None, datetime | None, datetime | None, datetime | None]:
    """Validate the timing arguments; returns (interval seconds, run_at, start_at, end_at) with
    naive datetimes taken as UTC. Errors name the argument."""
    given = [
        name
        for name, v in (("cron", cron), ("interval", interval), ("run_at", run_at))
        if v is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of cron=, interval= or run_at= "
            f"(got {', '.join(given) if given else 'none'})"
        )
    zone = _zone(timezone)
    seconds = None
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
            raise ConfigError(
                f"cron must be a string of 5 fields (or 6 with seconds first), got {cron!r}"
            )
        try:
            _cron(cron, datetime.now(zone)).get_next(datetime)  # one that never matches fails
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"cron {cron!r} is not a valid cron expression: {exc}") from exc
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, (timedelta, int, float)):
            raise ConfigError(f"interval must be a timedelta or seconds, got {interval!r}")
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ConfigError(f"interval must be > 0 seconds, got {interval!r}")
        try:
            _ = datetime.now(UTC) + timedelta(seconds=seconds)
        except OverflowError as exc:
            raise ConfigError(f"interval {interval!r} is too long") from exc
    if max_runs is not None and (type(max_runs) is not int or max_runs < 1):
        raise ConfigError(f"max_runs must be an int >= 1, got {max_runs!r}")
    run_at, start_at, end_at = (
        _aware(name, value)
        for name, value in (("run_at", run_at), ("start_at", start_at), ("end_at", end_at))
    )
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise ConfigError(f"end_at ({end_at}) must be after start_at ({start_at})")
    return seconds, run_at, start_at, end_at


def first_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The first fire time of a new (or resumed) schedule, or None if it can never fire."""
    if schedule.run_at is not None:
        return _within(schedule, schedule.run_at)
    if schedule.interval is not None:
        if schedule.start_at is not None:
            start = schedule.start_at
            if start < now:  # resumed or redefined late: next slot of the same grid
                start = _next_slot(start, schedule.interval, now)
            return _within(schedule, start)
        return _within(schedule, now + timedelta(seconds=schedule.interval))
    after = now if schedule.start_at is None else max(now, schedule.start_at - _TICK)
    return _within(schedule, _next_cron(schedule, after))


def next_run(schedule: Schedule, fired: datetime, now: datetime) -> datetime | None:
    """The fire time after the run due at ``fired`` (fired at ``now``), or None when over."""
    if schedule.max_runs is not None and schedule.run_count + 1 >= schedule.max_runs:
        return None
    if schedule.run_at is not None:
        return None
    if schedule.interval is not None:
        following = fired + timedelta(seconds=schedule.interval)
        if not schedule.catch_up and following <= now:
            following = _next_slot(fired, schedule.interval, now)
        return _within(schedule, following)
    return _within(schedule, _next_cron(schedule, fired if schedule.catch_up else max(fired, now)))


def resumed_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The next fire time of a schedule resumed at ``now``: runs missed while paused are
    skipped (a paused one-off still runs once)."""
    upcoming = schedule.next_run_at
    if schedule.run_at is not None or (upcoming is not None and upcoming > now):
        return upcoming
    if schedule.interval is not None and upcoming is not None:
        return _within(schedule, _next_slot(upcoming, schedule.interval, now))
    return first_run(schedule, now)


_TICK = timedelta(microseconds=1)


def _next_slot(anchor: datetime, interval: float, now: datetime) -> datetime:
    """The first ``anchor + k * interval`` strictly after ``now``."""
    steps = math.floor((now - anchor).total_seconds() / interval) + 1
    slot = anchor + timedelta(seconds=steps * interval)
    return slot if slot > now else slot + timedelta(seconds=interval)


def _next_cron(schedule: Schedule, after: datetime) -> datetime:
    assert schedule.cron is not None
    start = after.astimezone(_zone(schedule.timezone))
    times = _cron(schedule.cron, start)
    moment = times.get_next(datetime)
    if not _wildcard_time(schedule.cron):
        # When the clocks go back, a fixed time of day (02:30) is shown twice: fire on the first
        # pass only, as cron does (wildcard times such as hourly keep firing by real time).
        while moment.replace(tzinfo=None) <= start.replace(tzinfo=None):
            moment = times.get_next(datetime)
    return moment.astimezone(UTC)


def _wildcard_time(expression: str) -> bool:
    fields = expression.split()
    time_of_day = fields[:3] if len(fields) == 6 else fields[:2]
    return any(field.startswith("*") for field in time_of_day)


def _cron(expression: str, start: datetime) -> croniter:
    six = len(expression.split()) == 6
    return croniter(expression, start, second_at_beginning=six)


def _within(schedule: Schedule, moment: datetime) -> datetime | None:
    if schedule.end_at is not None and moment > schedule.end_at:
        return None
    return moment


def _zone(name: str | None) -> ZoneInfo:
    if name is None:
        return ZoneInfo("UTC")
    if not isinstance(name, str):
        raise ConfigError(f"timezone must be an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {name!r} is not a known IANA time zone") from exc


def _aware(field: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ConfigError(f"{field} must be a datetime, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
