"""``omniq``: run a worker and inspect queues from the shell.

A thin layer over the public API. Configuration: ``--config FILE`` (YAML, as
``OmniQ.from_config_file``), else the ``OMNIQ_*`` variables (``OmniQ.from_env``), which with none
set is the embedded SQLite default under ``./omniq_data``. Tables for people, ``--json`` for
scripts. Expected failures print one line on stderr (``omniq: error: ...``) and exit 1; usage
errors are click's (exit 2). The command installs a log handler on stderr; the library never does.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

try:
    import click
    import rich  # noqa: F401  (checked here so that a missing extra is one clear line)
except ImportError as exc:  # pragma: no cover - only without the extra
    sys.exit(f"omniq: error: the command needs {exc.name}: pip install 'omniq[cli]'")


import omniq
from omniq import EventType, OmniQ, OmniQError, Task, TaskStatus
from omniq.cli.common import CommandError, State, done, log_handler, one_line, shared_options
from omniq.cli.output import emit_json, plain, show_fields, show_table, show_text, when
from omniq.cli.schedules import schedules
from omniq.models import utcnow
from omniq.registry import WORKERS
from omniq.workers.heartbeat import WorkerInfo

__all__ = ["cli", "main"]

logger = logging.getLogger("omniq.cli")

_SCAN = 1000  # tasks read per status to discover the queue names `omniq status` shows
_MANY = 100_000  # bound on the running tasks `omniq status` lists (one per busy worker slot)
_REQUEUEABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@shared_options
@click.version_option(omniq.__version__, prog_name="omniq")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """OmniQ task queue: run a worker, inspect and manage tasks."""
    ctx.ensure_object(State)
    root = logging.getLogger("omniq")
    if log_handler not in root.handlers:
        root.addHandler(log_handler)


# --- worker ----------------------------------------------------------------------------------


def _queue_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one queue name, e.g. --queues high,low")
    return names


class _StopOnSignal:
    """First SIGINT/SIGTERM: ask for a graceful stop. Second: exit at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.grace: float | None = None  # the worker's stop_timeout, once it runs
        # next() on a C counter is atomic: a signal handled inside this handler (they nest)
        # still counts as the second one.
        self._received = itertools.count()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if next(self._received):
            logger.warning(
                "%s again: stopping at once; the tasks still running return to the queue when "
                "their leases lapse",
                name,
            )
            os._exit(128 + signum)  # the worker's threads are not waited for: that is the point
        self.requested.set()
        logger.info(
            "%s: stopping gracefully (no new tasks; running ones get %s s); %s again to stop at "
            "once",
            name,
            self.grace,
            name,
        )


def _import_modules(modules: Sequence[str]) -> None:
    # Like celery and rq: tasks defined next to where the worker is started resolve by import path.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CommandError(f"--import {module}: {exc}") from exc


def _describe_backend(queue: Any) -> str:
    where = getattr(queue, "db_path", None)
    return f"{type(queue).__name__}" + (f" at {where}" if where else "")


@cli.command()
@click.option(
    "--worker-type",
    type=click.Choice(sorted(WORKERS)),
    help="How tasks run [default: the configured worker, else thread_pool]; gevent "
    "monkey-patches the process first (see docs/workers.md).",
)
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    help="Tasks run at once [default: the configured one, else MAX_WORKERS].",
)
@click.option(
    "--queues",
    metavar="NAME,NAME",
    callback=_queue_list,
    help="Queues to consume, highest priority first [default: all].",
)
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Module to import first, where task functions live (repeatable; the current "
    "directory is on the import path).",
)
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    metavar="PATTERN",
    help="Run only functions whose import path matches, e.g. 'myapp.tasks:*' (repeatable or "
    "comma-separated), besides the imported modules' @oq.task functions; others fail unimported "
    "[default: ALLOWED_FUNCTIONS, else any function].",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    help="Seconds running tasks get to finish after SIGINT/SIGTERM before they are handed back "
    "[default: the configured one, else 30].",
)
@shared_options
@click.pass_obj
def worker(
    state: State,
    worker_type: str | None,
    max_workers: int | None,
    queues: list[str] | None,
    imports: tuple[str, ...],
    allowed: tuple[str, ...],
    stop_timeout: float | None,
) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM.

    The first signal stops it gracefully: no new claims; running tasks get --stop-timeout seconds
    to finish, then go back to the queue. A second signal stops it at once (exit status
    128 + signal number); the tasks it was running come back when their leases lapse.
    """
    if _runs_gevent(state, worker_type):
        # First of all: the task modules imported next, the storages' sockets and threads and
        # the event loop must all be created after the patch (see omniq.workers.gevent_pool).
        from omniq.workers.gevent_pool import patch

        patch()
    stop = _StopOnSignal()
    _import_modules(imports)
    given = {
        "max_workers": max_workers,
        "queues": queues,
        "stop_timeout": stop_timeout,
        "allowed_functions": [p for item in allowed for p in item.split(",") if p.strip()] or None,
    }
    options = {name: value for name, value in given.items() if value is not None}
    with state.open(worker_type, **options) as oq:
        # One round trip first: an unreachable server is one error line, not a worker that logs
        # failed claims forever.
        oq.get_task("omniq-cli-probe")
        if stop.requested.is_set():
            return  # stopped while starting: nothing was claimed
        oq.start_worker()
        running = oq.worker
        stop.grace = running.stop_timeout
        served = running.queues or oq.task_queue.queues
        logger.info(
            "worker %s started: %s, %d at a time, queues %s, backend %s, project %r",
            running.worker_id,
            type(running).__name__,
            running.max_workers,
            ",".join(served) if served else "all",
            _describe_backend(oq.task_queue),
            oq.project_name,
        )
        _wait_interruptibly(stop.requested.wait)
        # The graceful stop runs in a helper thread so that the main thread keeps waiting with
        # a timeout, where a second signal is always handled at once.
        stopper = threading.Thread(target=_stop_worker, args=(oq,), name="omniq-stop")
        stopper.start()

        def stopped(timeout: float) -> bool:
            stopper.join(timeout)
            return not stopper.is_alive()

        _wait_interruptibly(stopped)
    logger.info("worker stopped")


def _runs_gevent(state: State, worker_type: str | None) -> bool:
    """Whether the worker will be the gevent one: ``--worker-type``, else the configuration
    (read here without building anything; a broken one is reported when it is opened)."""
    if worker_type is not None:
        return worker_type == "gevent"
    from omniq._configurable import load_yaml
    from omniq.config import Settings

    try:
        configured = load_yaml(state.config).get("worker") if state.config else None
        if isinstance(configured, dict) and configured.get("type"):
            return configured["type"] == "gevent"
        return Settings.from_env().DEFAULT_WORKER == "gevent"
    except (OmniQError, OSError):
        return False


def _stop_worker(oq: OmniQ) -> None:
    try:
        oq.stop_worker()
    except Exception:
        logger.exception("stopping the worker failed")


def _wait_interruptibly(wait: Any) -> None:
    """Call ``wait(timeout)`` in short slices until it returns true (signals run in between)."""
    while not wait(0.1):
        pass


# --- inspection --------------------------------------------------------------------------------


def _queue_names(oq: OmniQ) -> list[str]:
    names: set[str] = set(oq.task_queue.queues or ())
    for status in TaskStatus:
        names.update(task.queue_name for task in oq.list_tasks(status=status, limit=_SCAN))
    return sorted(names)


@cli.command()
@shared_options
@click.pass_obj
def status(state: State) -> None:
    """Tasks per queue and status; the live workers (from their heartbeats) and what each runs."""
    statuses = list(TaskStatus)
    with state.open() as oq:
        counts = {name: {s.value: oq.count(name, s) for s in statuses} for name in _queue_names(oq)}
        totals = {s.value: oq.count(None, s) for s in statuses}
        running = oq.list_tasks(status=TaskStatus.RUNNING, limit=_MANY)
        beats = oq.list_workers()
    # Queues whose tasks all lie beyond the scan still count: in one row of their own.
    other = {s: totals[s] - sum(row[s] for row in counts.values()) for s in totals}
    if any(other.values()):
        counts["(other queues)"] = other
    workers = _workers(running, beats)
    if state.as_json:
        emit_json(
            {
                "queues": {
                    name: {**row, "total": sum(row.values())} for name, row in counts.items()
                },
                "total": {**totals, "total": sum(totals.values())},
                "workers": workers,
            }
        )
        return
    rows = [[name, *row.values(), sum(row.values())] for name, row in counts.items()]
    if len(rows) > 1:
        rows.append(["(all)", *totals.values(), sum(totals.values())])
    show_table("Queues", ["queue", *totals, "total"], rows, empty="no tasks")
    show_table(
        "Workers",
        ["worker", "type", "host", "pid", "queues", "busy", "done", "started", "last beat"],
        [_worker_row(w) for w in workers],
        empty="no worker is running",
    )
    show_table(
        "Running tasks",
        ["worker", "task", "function", "queue", "started", "lease until"],
        [
            [w["worker_id"], t["id"], t["func_name"], t["queue_name"], t["started_at"], _lease(t)]
            for w in workers
            for t in w["tasks"]
        ],
        empty="no task is running",
    )


# What `omniq status` shows of a heartbeat. Its ``running`` ids are left out: they are up to a
# beat old, while an entry's ``tasks`` are read from the queue now.
_BEAT_FIELDS = [f for f in WorkerInfo.__struct_fields__ if f not in ("worker_id", "running")]


def _workers(running: list[Task], beats: list[WorkerInfo]) -> list[dict[str, Any]]:
    """One entry per worker that sent a heartbeat lately or holds a running task: its
    heartbeat's fields (None without one) and the running tasks it holds."""
    now = utcnow()
    seen = {info.worker_id: info for info in beats}
    by_worker: dict[str, list[Task]] = {worker_id: [] for worker_id in seen}
    for task in running:
        by_worker.setdefault(task.worker_id or "?", []).append(task)
    entries = []
    for worker_id, tasks in sorted(by_worker.items()):
        info = seen.get(worker_id)
        beat = {name: getattr(info, name, None) for name in _BEAT_FIELDS}
        entries.append(
            {
                "worker_id": worker_id,
                # Without a recent heartbeat (a worker that died, or one that cannot write it),
                # only a lease that has not lapsed says the worker is alive.
                "live": info is not None
                or any(t.lease_until is not None and t.lease_until > now for t in tasks),
                **beat,
                "tasks": [
                    {
                        "id": t.id,
                        "func_name": t.func_name,
                        "queue_name": t.queue_name,
                        "started_at": t.started_at,
                        "lease_until": t.lease_until,
                    }
                    for t in tasks
                ],
            }
        )
    return entries


def _worker_row(worker: dict[str, Any]) -> list[Any]:
    busy = len(worker["tasks"])
    if worker["last_seen"] is None:
        last = "none" if worker["live"] else "none (leases lapsed)"
        return [worker["worker_id"], "", "", "", "", busy, "", "", last]
    queues = worker["queues"]
    return [
        worker["worker_id"],
        worker["worker_type"],
        worker["host"],
        worker["pid"],
        ",".join(queues) if queues else "all",
        f"{busy} of {worker['max_workers']}",
        worker["processed"],
        worker["started_at"],
        worker["last_seen"],
    ]


def _lease(task: dict[str, Any]) -> str:
    until = task["lease_until"]
    if until is None:
        return ""
    return when(until) + (" (lapsed)" if until <= utcnow() else "")


@cli.command()
@click.option("--queue", "queue_name", metavar="NAME", help="Only this queue.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in TaskStatus], case_sensitive=False),
    help="Only tasks in this status.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@shared_options
@click.pass_obj
def tasks(state: State, queue_name: str | None, status: str | None, limit: int) -> None:
    """List tasks, oldest first."""
    with state.open() as oq:
        found = oq.list_tasks(queue_name, status.lower() if status else None, limit)
    if state.as_json:
        emit_json(plain(found))
        return
    show_table(
        "Tasks" + (f" (the first {limit}: see --limit)" if len(found) == limit else ""),
        ["id", "queue", "function", "status", "priority", "attempts", "created"],
        [
            [t.id, t.queue_name, t.func_name, t.status.value, t.priority, t.attempts, t.created_at]
            for t in found
        ],
        empty="no tasks",
    )


def _existing(oq: OmniQ, task_id: str) -> Task:
    found = oq.get_task(task_id)
    if found is None:
        raise CommandError(f"no task with id {task_id!r}")
    return found


@cli.command()
@click.argument("task_id")
@shared_options
@click.pass_obj
def task(state: State, task_id: str) -> None:
    """Show one task, its result (if any) and its events."""
    with state.open() as oq:
        found = _existing(oq, task_id)
        result = oq.get_result(task_id) if oq.result_store is not None else None
        history = oq.get_events(task_id=task_id)
    if state.as_json:
        emit_json({"task": plain(found), "result": plain(result), "events": plain(history)})
        return
    error = (result.error if result is not None else None) or found.error
    show_fields(
        "Task",
        [
            ("id", found.id),
            ("function", found.func_name),
            ("queue", found.queue_name),
            ("status", found.status.value),
            ("priority", found.priority),
            ("attempts", f"{found.attempts} of {found.max_attempts}"),
            ("created", found.created_at),
            ("run at", found.run_at),
            ("expires", found.expires_at),
            ("started", found.started_at),
            ("finished", found.finished_at),
            ("worker", found.worker_id),
            ("lease until", found.lease_until),
            ("timeout", found.timeout),
            ("depends on", ", ".join(found.depends_on)),
            ("key", found.key),
            ("schedule", found.schedule_id),
            ("result", repr(result.value) if result is not None and result.ok else None),
            ("error", f"{error.type}: {error.message}" if error else None),
        ],
    )
    show_table(
        "Events",
        ["time", "type", "attempt", "worker", "duration", "error"],
        [
            [e.timestamp, e.type.value, e.attempt, e.worker_id, _seconds(e.duration), _err(e)]
            for e in history
        ],
        empty="none recorded",
    )
    if error is not None and error.traceback:
        show_text("Traceback of the error", error.traceback)


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f"{duration:.3f} s"


def _err(event: Any) -> str:
    return f"{event.error.type}: {event.error.message}" if event.error else ""


@cli.command()
@click.argument("task_id")
@shared_options
@click.pass_obj
def cancel(state: State, task_id: str) -> None:
    """Cancel a task that has not finished (a running one is asked to stop)."""
    with state.open() as oq:
        before = _existing(oq, task_id)
        if before.status.is_final:
            raise CommandError(f"task {task_id} has already finished ({before.status.value})")
        if not oq.cancel(task_id):
            raise CommandError(f"task {task_id} finished before it could be cancelled")
    text = (
        f"asked running task {task_id} to stop; it is cancelled"
        if before.status is TaskStatus.RUNNING
        else f"cancelled task {task_id}"
    )
    done(state, {"task_id": task_id, "cancelled": True, "was": before.status.value}, text)


@cli.command()
@click.argument("task_id")
@shared_options
@click.pass_obj
def requeue(state: State, task_id: str) -> None:
    """Put a failed, cancelled or expired task back in its queue, with fresh attempts."""
    with state.open() as oq:
        before = _existing(oq, task_id)
        if before.status not in _REQUEUEABLE:
            raise CommandError(
                f"task {task_id} is {before.status.value}: only failed, cancelled or expired "
                "tasks can be requeued"
            )
        if not oq.requeue(task_id):
            raise CommandError(f"task {task_id} changed status meanwhile: not requeued")
    text = f"requeued task {task_id}"
    done(state, {"task_id": task_id, "requeued": True, "was": before.status.value}, text)


@cli.command()
@click.option("--task", "task_id", metavar="ID", help="Only this task's events.")
@click.option(
    "--type",
    "event_type",
    type=click.Choice([e.value for e in EventType], case_sensitive=False),
    help="Only events of this type.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@shared_options
@click.pass_obj
def events(state: State, task_id: str | None, event_type: str | None, limit: int) -> None:
    """List task events, oldest first."""
    with state.open() as oq:
        if oq.event_store is None:
            raise CommandError("no event storage is configured (EVENT_STORAGE_TYPE=none)")
        found = oq.get_events(
            task_id=task_id, event_type=event_type.lower() if event_type else None, limit=limit
        )
    if state.as_json:
        emit_json(plain(found))
        return
    show_table(
        "Events" + (f" (the first {limit}: see --limit)" if len(found) == limit else ""),
        ["time", "task", "type", "queue", "attempt", "worker", "duration", "error"],
        [
            [
                e.timestamp,
                e.task_id,
                e.type.value,
                e.queue_name,
                e.attempt,
                e.worker_id,
                _seconds(e.duration),
                _err(e),
            ]
            for e in found
        ],
        empty="no events",
    )


@cli.command()
@click.option("--queue", "queue_name", metavar="NAME", help="Only this queue [default: all].")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@shared_options
@click.pass_obj
def purge(state: State, queue_name: str | None, yes: bool) -> None:
    """Delete every task that is not running (of one queue, or of all)."""
    where = f"queue {queue_name!r}" if queue_name else "all queues"
    if not yes and not sys.stdin.isatty():
        raise CommandError(f"purge deletes the tasks of {where}: pass --yes to confirm")
    with state.open() as oq:
        if not yes:
            doomed = oq.count(queue_name) - oq.count(queue_name, TaskStatus.RUNNING)
            click.confirm(
                f"Delete {doomed} tasks (all but the running ones) of {where}?",
                abort=True,
                err=True,
            )
        removed = oq.purge(queue_name)
    done(state, {"purged": removed, "queue": queue_name}, f"purged {removed} tasks of {where}")


cli.add_command(schedules)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``omniq`` console script and of ``python -m omniq``."""
    try:
        code = cli.main(args=argv, prog_name="omniq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("omniq: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (OmniQError, OSError) as exc:
        click.echo(f"omniq: error: {one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
