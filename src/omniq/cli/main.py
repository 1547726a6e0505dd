"""``omniq``: run workers and inspect queues from the shell.

Configuration comes from ``--config FILE`` (YAML), else ``OMNIQ_*`` variables, else the embedded
SQLite default. Expected failures print one line to stderr and exit non-zero.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections import Counter
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra
    sys.stderr.write("omniq: error: the command needs click and rich: pip install 'omniq[cli]'\n")
    raise SystemExit(2) from None

import msgspec

from omniq import EventType, OmniQ, TaskStatus
from omniq._configurable import load_yaml
from omniq.cli.output import emit_json, show_table, when
from omniq.config import Settings
from omniq.errors import OmniQError

__all__ = ["cli", "main"]

logger = logging.getLogger("omniq.cli")


class _State:
    def __init__(self, config: str | None, as_json: bool, log_level: str | None) -> None:
        self.config, self.as_json, self.log_level = config, as_json, log_level

    def omniq(self, worker: dict[str, Any] | None = None) -> OmniQ:
        """The configured facade (worker section overridden by ``worker``)."""
        data: dict[str, Any] = load_yaml(self.config) if self.config else {}
        settings = Settings.from_env()
        if self.log_level or "OMNIQ_LOG_LEVEL" not in os.environ:
            # The command logs at INFO unless told otherwise (the library default is WARNING).
            settings = Settings.from_env(LOG_LEVEL=(self.log_level or "INFO").upper())
        if worker:
            section = dict(data.get("worker") or {})
            config = dict(section.get("config") or {})
            config.update({k: v for k, v in worker.items() if k != "type" and v is not None})
            section["config"] = config
            if worker.get("type"):
                section["type"] = worker["type"]
            section.setdefault("type", settings.DEFAULT_WORKER)
            data["worker"] = section
        return OmniQ.from_dict(data, settings=settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="OMNIQ_CONFIG_FILE",
    help="YAML configuration file (default: OMNIQ_* variables, else embedded SQLite).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def cli(ctx: click.Context, config: str | None, as_json: bool, log_level: str | None) -> None:
    """OmniQ task queue: workers and inspection."""
    if config is not None and not os.path.isfile(config):
        raise OmniQError(f"configuration file {config!r} does not exist")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("omniq").addHandler(handler)
    ctx.obj = _State(config, as_json, log_level)


@cli.command()
@click.option(
    "--worker-type", type=click.Choice(["async", "thread_pool", "thread", "process_pool"])
)
@click.option("--max-workers", type=click.IntRange(min=1), help="Tasks run at once.")
@click.option("--queues", help="Comma-separated queues, highest priority first.")
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import a module first (where the task functions live); repeatable.",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks get to finish on SIGTERM/SIGINT.",
)
@click.pass_obj
def worker(
    state: _State,
    worker_type: str | None,
    max_workers: int | None,
    queues: str | None,
    imports: tuple[str, ...],
    stop_timeout: float,
) -> None:
    """Run a worker until SIGINT/SIGTERM (a second signal stops at once)."""
    sys.path.insert(0, os.getcwd())
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OmniQError(f"--import {module}: {exc}") from exc
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    oq = state.omniq(
        {
            "type": worker_type,
            "max_workers": max_workers,
            "queues": queue_list,
            "stop_timeout": stop_timeout,
        }
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            logger.warning(
                "second signal: stopping at once; running tasks return after their lease"
            )
            os._exit(1)
        logger.info("%s: stopping gracefully (again to stop at once)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with oq:
        oq.start_worker()
        core = oq.worker
        logger.info(
            "worker %s started: %s, queues %s",
            core.worker_id,
            type(core).__name__,
            core.queues or "all",
        )
        stop.wait()
        oq.stop_worker()
    logger.info("worker stopped")


@cli.command()
@click.pass_obj
def status(state: _State) -> None:
    """Task counts per queue and status, and what each live worker runs."""
    with state.omniq() as oq:
        tasks = oq.list_tasks(limit=100_000)
        counts: Counter[tuple[str, str]] = Counter((t.queue_name, t.status.value) for t in tasks)
        queues = sorted({q for q, _ in counts})
        running = [t for t in tasks if t.status is TaskStatus.RUNNING]
    statuses = [s.value for s in TaskStatus]
    if state.as_json:
        emit_json(
            {
                "queues": {q: {s: counts[(q, s)] for s in statuses} for q in queues},
                "workers": _by_worker(running),
            }
        )
        return
    rows = [[q, *(counts[(q, s)] or "" for s in statuses)] for q in queues]
    show_table("Queues", ["queue", *statuses], rows)
    rows = [
        [w, t["id"], t["func"], t["started_at"]]
        for w, ts in _by_worker(running).items()
        for t in ts
    ]
    show_table("Live workers (holding leases)", ["worker", "task", "function", "started"], rows)


def _by_worker(running: list[Any]) -> dict[str, list[dict[str, str]]]:
    workers: dict[str, list[dict[str, str]]] = {}
    for task in running:
        workers.setdefault(task.worker_id or "?", []).append(
            {"id": task.id, "func": task.func_name, "started_at": when(task.started_at)}
        )
    return workers


@cli.command()
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]))
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
def tasks(state: _State, queue_name: str | None, status: str | None, limit: int) -> None:
    """List tasks, oldest first."""
    with state.omniq() as oq:
        found = oq.list_tasks(queue_name, status, limit)
    if state.as_json:
        emit_json([_task_dict(t) for t in found])
        return
    show_table(
        "Tasks",
        ["id", "queue", "function", "status", "priority", "attempts", "created"],
        [
            [
                t.id,
                t.queue_name,
                t.func_name,
                t.status.value,
                t.priority,
                t.attempts,
                when(t.created_at),
            ]
            for t in found
        ],
    )


def _task_dict(task: Any) -> dict[str, Any]:
    fields = msgspec.structs.asdict(task)
    fields.pop("payload")
    return fields


@cli.command()
@click.argument("task_id")
@click.pass_obj
def task(state: _State, task_id: str) -> None:
    """Show one task, its result and its events."""
    with state.omniq() as oq:
        found = oq.get_task(task_id)
        if found is None:
            raise OmniQError(f"no task with id {task_id!r}")
        result = oq.get_result(task_id) if oq.result_store is not None else None
        events = oq.get_events(task_id=task_id)
    if state.as_json:
        emit_json({"task": _task_dict(found), "result": result, "events": events})
        return
    show_table(
        f"Task {task_id}",
        ["field", "value"],
        [[k, v] for k, v in _task_dict(found).items() if v not in (None, (), "")],
    )
    if result is not None:
        shown = result.error.message if result.error else repr(result.value)
        show_table(
            "Result",
            ["status", "attempts", "finished", "value or error"],
            [[result.status.value, result.attempts, when(result.finished_at), shown]],
        )
    show_table(
        "Events",
        ["time", "type", "attempt", "worker", "error"],
        [
            [
                when(e.timestamp),
                e.type.value,
                e.attempt,
                e.worker_id,
                e.error.message if e.error else "",
            ]
            for e in events
        ],
    )


@cli.command()
@click.argument("task_id")
@click.pass_obj
def cancel(state: _State, task_id: str) -> None:
    """Cancel a task that has not finished."""
    with state.omniq() as oq:
        if not oq.cancel(task_id):
            raise OmniQError(f"task {task_id!r} does not exist or has already finished")
    _done(state, {"cancelled": task_id}, f"cancelled {task_id}")


@cli.command()
@click.argument("task_id")
@click.pass_obj
def requeue(state: _State, task_id: str) -> None:
    """Put a failed, cancelled or expired task back in its queue."""
    with state.omniq() as oq:
        if not oq.requeue(task_id):
            raise OmniQError(f"task {task_id!r} does not exist or is not failed/cancelled/expired")
    _done(state, {"requeued": task_id}, f"requeued {task_id}")


@cli.command()
@click.option("--task", "task_id", help="Only this task's events.")
@click.option("--type", "event_type", type=click.Choice([e.value for e in EventType]))
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_obj
def events(state: _State, task_id: str | None, event_type: str | None, limit: int) -> None:
    """List task events, oldest first."""
    with state.omniq() as oq:
        found = oq.get_events(task_id=task_id, event_type=event_type, limit=limit)
    if state.as_json:
        emit_json(found)
        return
    show_table(
        "Events",
        ["time", "task", "type", "queue", "attempt", "worker", "error"],
        [
            [
                when(e.timestamp),
                e.task_id,
                e.type.value,
                e.queue_name,
                e.attempt,
                e.worker_id,
                e.error.message if e.error else "",
            ]
            for e in found
        ],
    )


@cli.command()
@click.option("--queue", "queue_name", help="Only this queue (default: all).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(state: _State, queue_name: str | None, yes: bool) -> None:
    """Delete every task that is not running."""
    if not yes:
        if not sys.stdin.isatty():
            raise OmniQError("purge deletes tasks: pass --yes to confirm")
        click.confirm(
            f"Delete every task that is not running in {queue_name or 'all queues'}?", abort=True
        )
    with state.omniq() as oq:
        removed = oq.purge(queue_name)
    _done(state, {"purged": removed}, f"purged {removed} tasks")


def _done(state: _State, data: dict[str, Any], text: str) -> None:
    if state.as_json:
        emit_json(data)
    else:
        click.echo(text)


def main() -> None:
    """Entry point of the ``omniq`` console script."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("omniq: aborted\n")
        raise SystemExit(1) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (OmniQError, OSError) as exc:
        sys.stderr.write(f"omniq: error: {exc}\n")
        raise SystemExit(1) from None
