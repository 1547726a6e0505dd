"""``omniq schedules``: list schedules, pause, resume or delete one."""

from __future__ import annotations

from collections.abc import Callable

import click

from omniq import OmniQ
from omniq.cli.common import CommandError, State, done, shared_options
from omniq.cli.output import emit_json, every, plain, show_table, when
from omniq.models import Schedule, ScheduleStatus

__all__ = ["schedules"]


@click.group(invoke_without_command=True)
@shared_options
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """List the schedules, or pause, resume or delete one (omniq schedules pause ID).

    Schedules are defined in code with oq.schedule(...); running workers fire them.
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.ensure_object(State)
    with state.open() as oq:
        found = oq.list_schedules()
    if state.as_json:
        emit_json(plain(found))
        return
    show_table(
        "Schedules",
        ["id", "function", "queue", "rule", "status", "next run", "runs", "last run"],
        [
            [
                s.id,
                s.func_name,
                s.queue_name,
                _rule(s),
                s.status.value,
                # A paused schedule fires nothing; resuming it computes its next run.
                s.next_run_at if s.status is ScheduleStatus.ACTIVE else None,
                s.run_count if s.max_runs is None else f"{s.run_count} of {s.max_runs}",
                s.last_run_at,
            ]
            for s in found
        ],
        empty="no schedules",
    )


def _rule(schedule: Schedule) -> str:
    if schedule.cron is not None:
        rule = f"cron {schedule.cron}"
    elif schedule.interval is not None:
        rule = every(schedule.interval)
    else:
        rule = f"once at {when(schedule.run_at)}"
    return rule + (f" ({schedule.timezone})" if schedule.timezone else "")


def _existing_schedule(oq: OmniQ, schedule_id: str) -> Schedule:
    found = oq.get_schedule(schedule_id)
    if found is None:
        raise CommandError(f"no schedule with id {schedule_id!r}")
    return found


def _move(
    oq: OmniQ, schedule_id: str, only: ScheduleStatus, move: Callable[[str], bool], verb: str
) -> Schedule:
    """Move a schedule out of status ``only`` with ``move`` (``verb`` names it in errors); the
    schedule as it was before."""
    before = _existing_schedule(oq, schedule_id)
    if before.status is not only:
        raise CommandError(
            f"schedule {schedule_id} is {before.status.value}: only {only.value} schedules can "
            f"be {verb}"
        )
    if not move(schedule_id):
        raise CommandError(f"schedule {schedule_id} changed meanwhile: not {verb}")
    return before


@schedules.command("pause")
@click.argument("schedule_id")
@shared_options
@click.pass_obj
def pause_schedule(state: State, schedule_id: str) -> None:
    """Stop an active schedule from firing until it is resumed."""
    with state.open() as oq:
        before = _move(oq, schedule_id, ScheduleStatus.ACTIVE, oq.pause_schedule, "paused")
    data = {"schedule_id": schedule_id, "paused": True, "was": before.status.value}
    done(state, data, f"paused schedule {schedule_id}")


@schedules.command("resume")
@click.argument("schedule_id")
@shared_options
@click.pass_obj
def resume_schedule(state: State, schedule_id: str) -> None:
    """Fire a paused schedule again (the runs it missed while paused are skipped)."""
    with state.open() as oq:
        before = _move(oq, schedule_id, ScheduleStatus.PAUSED, oq.resume_schedule, "resumed")
        after = oq.get_schedule(schedule_id)
    next_run = after.next_run_at if after is not None else None
    data = {
        "schedule_id": schedule_id,
        "resumed": True,
        "was": before.status.value,
        "status": after.status.value if after is not None else None,
        "next_run_at": next_run,
    }
    text = f"resumed schedule {schedule_id}" + (f"; next run {when(next_run)}" if next_run else "")
    done(state, data, text)


@schedules.command("delete")
@click.argument("schedule_id")
@shared_options
@click.pass_obj
def delete_schedule(state: State, schedule_id: str) -> None:
    """Delete a schedule (the tasks it already enqueued stay)."""
    with state.open() as oq:
        before = _existing_schedule(oq, schedule_id)
        if not oq.delete_schedule(schedule_id):
            raise CommandError(f"schedule {schedule_id} was deleted meanwhile")
    data = {"schedule_id": schedule_id, "deleted": True, "was": before.status.value}
    done(state, data, f"deleted schedule {schedule_id}")
