"""The ``omniq`` command end to end: each test runs it in subprocesses (as procrastinate does) on a
fresh embedded database, with tasks enqueued by the test through the library."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import taskfns
from conftest import wait_until_sync

from omniq import OmniQ, TaskStatus
from omniq.config import Settings
from omniq.models import ScheduleStatus, TaskResult, utcnow
from omniq.queue import SQLiteTaskQueue
from omniq.scheduling import Scheduler

Run = Callable[..., subprocess.CompletedProcess[str]]
# -P: the current directory is not put on sys.path, as with the installed ``omniq`` script.
OMNIQ = [sys.executable, "-P", "-m", "omniq"]


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the test and of its ``omniq`` subprocesses: only our OMNIQ_* variables
    (tests/ is on PYTHONPATH, see conftest), so ``OmniQ.from_env()`` here sees what they see."""
    for name in [name for name in os.environ if name.startswith("OMNIQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OMNIQ_BASE_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMNIQ_POLL_INTERVAL", "0.05")
    return dict(os.environ)


@pytest.fixture
def run(env: dict[str, str], tmp_path: Path) -> Run:
    """Run ``omniq ARGS...`` to completion (stdin is not a terminal)."""

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*OMNIQ, *args],
            env={**env, **(extra_env or {})},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class Worker:
    """``omniq worker ...`` in a subprocess; its stderr (the log) is collected as it comes."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*OMNIQ, *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: list[str] = []
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The first log line containing ``text`` (waits for it)."""

        def found() -> str | None:
            return next((line for line in self._lines if text in line), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._closed, timeout)
            line = found()
        assert line is not None, f"the worker did not log {text!r}; its log:\n{self.log}"
        return line

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def exit_code(self, timeout: float = 15.0) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log = self.log
            raise AssertionError(f"the worker runs on after {timeout} s; log:\n{log}") from None
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join()


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Worker:
        """``omniq [ARGS...]`` (``worker`` first unless global options come before it)."""
        if "worker" not in args:
            args = ("worker", *args)
        worker = Worker({**env, **(extra_env or {})}, tmp_path, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("omniq: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- inspection ------------------------------------------------------------------------------


def test_a_keyed_cli_refuses_an_unsigned_result(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:  # no key: what anyone who can write the database writes
        task_id = oq.enqueue(taskfns.noop)
        oq.result_store.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value="forged"))
    assert "forged" in run("task", task_id).stdout
    keyed = run("task", task_id, extra_env={"OMNIQ_SECRET_KEY": "cli-secret"})
    assert_one_error_line(keyed, "refusing an unsigned task result", task_id)
    assert "cli-secret" not in keyed.stderr


def test_status_counts_tasks_per_queue_and_status(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        first = oq.enqueue(taskfns.add, args=(1, 2), queue_name="high")
        oq.enqueue(taskfns.add, args=(3, 4), queue_name="high")
        oq.enqueue(taskfns.noop, queue_name="low")
        oq.cancel(first)

    report = ok_json(run("--json", "status"))

    assert report["queues"]["high"] == {
        "pending": 1,
        "waiting": 0,
        "running": 0,
        "retrying": 0,
        "success": 0,
        "failed": 0,
        "cancelled": 1,
        "expired": 0,
        "total": 2,
    }
    assert report["queues"]["low"]["pending"] == 1
    assert report["total"]["pending"] == 2 and report["total"]["total"] == 3
    assert report["workers"] == []
    table = run("status")
    assert table.returncode == 0, table.stderr
    assert "high" in table.stdout and "low" in table.stdout
    assert "no task is running" in table.stdout


def test_status_shows_each_live_worker_with_what_it_runs(
    env: dict[str, str], run: Run, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker("--import", "taskfns")
    marker = tmp_path / "started"
    with OmniQ.from_env() as oq:
        task_id = oq.enqueue(taskfns.block_until_killed, args=(str(marker), 60))
    wait_until_sync(marker.exists, timeout=30)
    worker_id = worker.wait_for_log("started:").split("omniq.cli: worker ")[1].split()[0]

    report = ok_json(run("status", "--json"))

    assert report["queues"]["default"]["running"] == 1
    [entry] = report["workers"]
    assert entry["worker_id"] == worker_id and entry["live"] is True
    [running] = entry["tasks"]
    assert running["id"] == task_id
    assert running["func_name"] == "taskfns:block_until_killed"
    assert running["started_at"] is not None
    table = run("status")
    assert worker_id in table.stdout and task_id in table.stdout


def test_status_shows_an_idle_worker_by_its_heartbeat_until_it_stops(
    env: dict[str, str], run: Run, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("--import", "taskfns", "--max-workers", "3", "--queues", "high,low")
    worker_id = worker.wait_for_log("started:").split("omniq.cli: worker ")[1].split()[0]
    with OmniQ.from_env() as oq:
        wait_until_sync(lambda: [w.worker_id for w in oq.list_workers()] == [worker_id], timeout=30)

    # An idle worker holds no lease: only its heartbeat tells that it runs.
    [entry] = ok_json(run("--json", "status"))["workers"]

    assert entry["worker_id"] == worker_id and entry["live"] is True
    assert entry["worker_type"] == "thread_pool"
    assert (entry["host"], entry["pid"]) == (socket.gethostname(), worker.process.pid)
    assert entry["queues"] == ["high", "low"] and entry["max_workers"] == 3
    assert entry["processed"] == 0 and entry["tasks"] == []
    started, last_seen = (datetime.fromisoformat(entry[k]) for k in ("started_at", "last_seen"))
    assert started <= last_seen <= utcnow()
    table = run("status")
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if worker_id in line]
    for cell in ("thread_pool", str(worker.process.pid), "high,low", "0 of 3"):
        assert cell in row
    assert "no task is running" in table.stdout

    worker.signal(signal.SIGTERM)
    assert worker.exit_code() == 0, worker.log

    # A graceful stop deletes the heartbeat: gone at once, not after it goes stale.
    assert ok_json(run("--json", "status"))["workers"] == []
    assert "no worker is running" in run("status").stdout


def test_tasks_lists_and_filters(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        high = oq.enqueue(taskfns.add, args=(1, 2), queue_name="high")
        low = oq.enqueue(taskfns.noop, queue_name="low")
        oq.cancel(low)

    assert [t["id"] for t in ok_json(run("--json", "tasks"))] == [high, low]
    assert [t["id"] for t in ok_json(run("tasks", "--json", "--queue", "low"))] == [low]
    pending = ok_json(run("--json", "tasks", "--status", "pending", "--limit", "1"))
    assert [(t["id"], t["status"], t["func_name"]) for t in pending] == [
        (high, "pending", "taskfns:add")
    ]
    assert "payload" not in pending[0]
    table = run("tasks")
    assert table.returncode == 0, table.stderr
    # Piped tables are not wrapped: whole ids, one task per line.
    assert any(high in line and "taskfns:add" in line for line in table.stdout.splitlines())
    assert ok_json(run("--json", "tasks", "--queue", "nowhere")) == []


def test_task_shows_details_result_and_events(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        task_id = oq.enqueue(taskfns.add, args=(1, 2), queue_name="low", priority=5)
        oq.cancel(task_id)

    detail = ok_json(run("--json", "task", task_id))

    assert detail["task"]["id"] == task_id
    assert detail["task"]["status"] == "cancelled" and detail["task"]["priority"] == 5
    assert detail["result"]["status"] == "cancelled"
    assert detail["result"]["error"]["type"] == "TaskCancelledError"
    assert [e["type"] for e in detail["events"]] == ["enqueued", "cancelled"]
    table = run("task", task_id)
    assert table.returncode == 0, table.stderr
    assert task_id in table.stdout and "taskfns:add" in table.stdout
    assert "TaskCancelledError" in table.stdout


def test_cancel_and_requeue(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        task_id = oq.enqueue(taskfns.noop)

    cancelled = run("cancel", task_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled task {task_id}" in cancelled.stdout
    assert_one_error_line(run("cancel", task_id), "already finished (cancelled)")

    assert ok_json(run("--json", "requeue", task_id)) == {
        "task_id": task_id,
        "requeued": True,
        "was": "cancelled",
    }
    with OmniQ.from_env() as oq:
        assert oq.get_task(task_id).status is TaskStatus.PENDING
    assert_one_error_line(run("requeue", task_id), "is pending", "failed, cancelled or expired")
    assert ok_json(run("cancel", "--json", task_id))["was"] == "pending"


def test_events_filters_by_task_type_and_limit(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        kept = oq.enqueue(taskfns.noop)
        dropped = oq.enqueue(taskfns.noop, queue_name="low")
        oq.cancel(dropped)

    everything = ok_json(run("--json", "events"))
    assert [(e["task_id"], e["type"]) for e in everything] == [
        (kept, "enqueued"),
        (dropped, "enqueued"),
        (dropped, "cancelled"),
    ]
    assert [e["type"] for e in ok_json(run("--json", "events", "--task", dropped))] == [
        "enqueued",
        "cancelled",
    ]
    [only] = ok_json(run("events", "--json", "--type", "cancelled"))
    assert only["task_id"] == dropped and only["queue_name"] == "low"
    assert len(ok_json(run("--json", "events", "--limit", "1"))) == 1
    table = run("events")
    assert table.returncode == 0, table.stderr
    assert dropped in table.stdout and "cancelled" in table.stdout


def fire_due_schedules(env: dict[str, str], at: datetime) -> list[str]:
    """Fire, as a worker's scheduler would at ``at``, the schedules of the default database."""
    settings = Settings.from_env()
    queue = SQLiteTaskQueue(project_name=settings.PROJECT_NAME, base_dir=settings.BASE_DIR)
    with queue, Scheduler(queue) as scheduler:
        return scheduler.run_pending(now=at)


def test_schedules_lists_every_rule(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        every = oq.schedule(taskfns.noop, interval=timedelta(minutes=5))
        nightly = oq.schedule(
            taskfns.add,
            args=(1, 2),
            cron="0 3 * * *",
            timezone="Europe/Paris",
            max_runs=2,
            queue_name="low",
            start_at=utcnow() + timedelta(days=1),  # not due when the others are fired below
        )
        once = oq.schedule(taskfns.noop, run_at=utcnow() + timedelta(days=1))
    [fired] = fire_due_schedules(env, utcnow() + timedelta(minutes=6))

    listed = {s["id"]: s for s in ok_json(run("--json", "schedules"))}

    assert set(listed) == {every, nightly, once}
    assert listed[every]["interval"] == 300 and listed[every]["status"] == "active"
    assert listed[every]["run_count"] == 1 and listed[every]["last_run_at"] is not None
    assert listed[every]["recent_task_ids"] == [fired]
    assert listed[nightly]["cron"] == "0 3 * * *" and listed[nightly]["queue_name"] == "low"
    assert listed[nightly]["func_name"] == "taskfns:add" and listed[nightly]["run_count"] == 0
    assert listed[once]["run_at"] is not None and listed[once]["next_run_at"] is not None
    assert "payload" not in listed[every]
    table = run("schedules")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if "taskfns:" in line}
    assert "every 5 min" in rows[every] and "active" in rows[every]
    assert "cron 0 3 * * * (Europe/Paris)" in rows[nightly] and "0 of 2" in rows[nightly]
    assert "once at " in rows[once]


def test_schedules_pause_resume_and_delete(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        schedule_id = oq.schedule(taskfns.noop, interval=timedelta(minutes=5))
        kept = oq.schedule(taskfns.noop, cron="*/5 * * * *")

    paused = run("schedules", "pause", schedule_id)
    assert paused.returncode == 0, paused.stderr
    assert f"paused schedule {schedule_id}" in paused.stdout
    [fired] = fire_due_schedules(env, utcnow() + timedelta(minutes=6))
    with OmniQ.from_env() as oq:
        assert oq.get_schedule(schedule_id).status is ScheduleStatus.PAUSED
        assert oq.get_task(fired).schedule_id == kept  # the paused one did not fire
    assert_one_error_line(run("schedules", "pause", schedule_id), "is paused")
    [row] = [line for line in run("schedules").stdout.splitlines() if schedule_id in line]
    assert "paused" in row

    resumed = ok_json(run("--json", "schedules", "resume", schedule_id))
    assert resumed["resumed"] is True and resumed["was"] == "paused"
    assert resumed["status"] == "active" and resumed["next_run_at"] is not None
    assert_one_error_line(run("schedules", "resume", schedule_id), "is active", "only paused")
    [event] = ok_json(run("--json", "events", "--type", "schedule_paused"))
    assert event["task_id"] == schedule_id

    assert ok_json(run("schedules", "delete", schedule_id, "--json")) == {
        "schedule_id": schedule_id,
        "deleted": True,
        "was": "active",
    }
    assert [s["id"] for s in ok_json(run("--json", "schedules"))] == [kept]
    assert_one_error_line(run("schedules", "delete", schedule_id), "no schedule with id")
    ok_json(run("schedules", "--json", "delete", kept))
    assert "Schedules: no schedules" in run("schedules").stdout


def test_purge_needs_yes_without_a_terminal(env: dict[str, str], run: Run) -> None:
    with OmniQ.from_env() as oq:
        oq.enqueue(taskfns.noop, queue_name="high")
        oq.enqueue(taskfns.noop, queue_name="high")
        oq.enqueue(taskfns.noop, queue_name="low")

    assert_one_error_line(run("purge"), "--yes")
    with OmniQ.from_env() as oq:
        assert oq.count() == 3
    assert ok_json(run("--json", "purge", "--queue", "low", "--yes")) == {
        "purged": 1,
        "queue": "low",
    }
    purged = run("purge", "-y")
    assert purged.returncode == 0 and "purged 2 tasks" in purged.stdout
    with OmniQ.from_env() as oq:
        assert oq.count() == 0


@pytest.mark.parametrize(("answer", "left"), [("n", 1), ("y", 0)])
def test_purge_asks_on_a_terminal(
    env: dict[str, str], tmp_path: Path, answer: str, left: int
) -> None:
    with OmniQ.from_env() as oq:
        oq.enqueue(taskfns.noop)
    keyboard, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*OMNIQ, "purge"],
            env=env,
            cwd=tmp_path,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(keyboard, f"{answer}\n".encode())
        stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(keyboard)
        os.close(terminal)

    assert "Delete 1 tasks" in stderr and "Traceback" not in stderr
    assert process.returncode == (0 if answer == "y" else 1)
    assert ("purged 1 tasks" in stdout) == (answer == "y")
    with OmniQ.from_env() as oq:
        assert oq.count() == left


def test_config_file_chooses_the_backend(env: dict[str, str], run: Run, tmp_path: Path) -> None:
    config = tmp_path / "omniq.yaml"
    config.write_text(
        "project_name: shop\n"
        "task_queue:\n"
        "  type: file\n"
        f"  config: {{base_dir: '{tmp_path / 'files'}'}}\n"
        "result_store: {type: memory}\n"
        "event_store: {type: none}\n"
    )
    with OmniQ.from_config_file(str(config)) as oq:
        task_id = oq.enqueue(taskfns.noop)

    assert [t["id"] for t in ok_json(run("--config", str(config), "--json", "tasks"))] == [task_id]
    assert ok_json(run("status", "--config", str(config), "--json"))["total"]["pending"] == 1
    assert ok_json(run("--json", "tasks")) == []  # the OMNIQ_* default is another database
    assert_one_error_line(run("--config", str(config), "events"), "no event storage")


# --- the worker ------------------------------------------------------------------------------


def test_worker_runs_tasks_until_sigterm(
    env: dict[str, str], run: Run, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    # A module next to where the worker starts resolves by import path, as with celery and rq.
    (tmp_path / "cwdtasks.py").write_text("def double(x):\n    return 2 * x\n")
    worker = start_worker("--import", "taskfns", "--import", "cwdtasks", "--max-workers", "2")
    with OmniQ.from_env() as oq:
        added = oq.enqueue(taskfns.add, args=(20, 22))
        doubled = oq.enqueue("cwdtasks:double", args=(21,))
        awaited = oq.enqueue(taskfns.async_add, args=(1, 1))
        failed = oq.enqueue(taskfns.fail, max_retries=0)
        assert oq.get_result(added, wait=True, timeout=30).unwrap() == 42
        assert oq.get_result(doubled, wait=True, timeout=30).unwrap() == 42
        assert oq.get_result(awaited, wait=True, timeout=30).unwrap() == 2
        assert oq.get_result(failed, wait=True, timeout=30).status is TaskStatus.FAILED

    started = worker.wait_for_log("started:")
    for fragment in ("ThreadPoolWorker", "2 at a time", "queues all", "SQLiteTaskQueue"):
        assert fragment in started
    worker.signal(signal.SIGTERM)
    assert worker.exit_code() == 0, worker.log
    assert "stopping gracefully" in worker.log and "worker stopped" in worker.log
    assert "Traceback" not in worker.log

    detail = run("task", failed)
    assert detail.returncode == 0, detail.stderr
    assert "ValueError: boom" in detail.stdout and "Traceback of the error" in detail.stdout
    assert run("requeue", failed).returncode == 0
    with OmniQ.from_env() as oq:
        assert oq.get_task(failed).status is TaskStatus.PENDING


def test_worker_allow_flag_limits_the_functions_it_runs(
    env: dict[str, str], start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    (tmp_path / "cwdtasks.py").write_text(
        "from omniq import TaskFunction\n\n"
        "@lambda func: TaskFunction(func, print, {})  # what @oq.task makes\n"
        "def tripled(x):\n    return 3 * x\n"
    )
    worker = start_worker(
        *("--import", "taskfns", "--import", "cwdtasks"),
        *("--allow", "taskfns:add", "--allow", "nothing:*,taskfns:async_*"),
    )
    with OmniQ.from_env() as oq:
        added = oq.enqueue(taskfns.add, args=(20, 22))
        awaited = oq.enqueue(taskfns.async_add, args=(1, 1))
        registered = oq.enqueue("cwdtasks:tripled", args=(2,))
        refused = oq.enqueue(taskfns.noop)
        assert oq.get_result(added, wait=True, timeout=30).unwrap() == 42
        assert oq.get_result(awaited, wait=True, timeout=30).unwrap() == 2
        assert oq.get_result(registered, wait=True, timeout=30).unwrap() == 6
        result = oq.get_result(refused, wait=True, timeout=30)
    assert result.status is TaskStatus.FAILED
    assert result.error.type == "FunctionNotAllowedError"
    assert "'nothing:*', 'taskfns:async_*'" in result.error.message
    worker.signal(signal.SIGTERM)
    assert worker.exit_code() == 0, worker.log


def test_worker_options_choose_type_and_queues(
    env: dict[str, str], start_worker: Callable[..., Worker]
) -> None:
    # The flag before the command name wins over OMNIQ_LOG_LEVEL (the startup line is INFO).
    worker = start_worker(
        *("--log-level", "info", "worker", "--import", "taskfns"),
        *("--worker-type", "async", "--queues", "high"),
        extra_env={"OMNIQ_LOG_LEVEL": "WARNING"},
    )
    with OmniQ.from_env() as oq:
        skipped = oq.enqueue(taskfns.add, args=(1, 1), queue_name="low")
        served = oq.enqueue(taskfns.async_add, args=(2, 2), queue_name="high")
        assert oq.get_result(served, wait=True, timeout=30).unwrap() == 4
        started = worker.wait_for_log("started:")
        assert "AsyncWorker" in started and "queues high" in started
        worker.signal(signal.SIGINT)
        assert worker.exit_code() == 0, worker.log
        assert oq.get_task(skipped).status is TaskStatus.PENDING


def test_graceful_stop_lets_the_running_task_finish(
    env: dict[str, str], start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker("--import", "taskfns", "--max-workers", "1")
    marker = tmp_path / "started"
    with OmniQ.from_env() as oq:
        in_flight = oq.enqueue(taskfns.block_until_killed, args=(str(marker), 1.0))
        wait_until_sync(marker.exists, timeout=30)
        queued = oq.enqueue(taskfns.add, args=(1, 2))  # the only slot is busy: stays queued
        signalled = utcnow()
        worker.signal(signal.SIGTERM)

        assert worker.exit_code() == 0, worker.log
        result = oq.get_result(in_flight)
        assert result is not None and result.unwrap() == "first run"
        assert result.finished_at > signalled  # it was still running when the signal came
        assert oq.get_task(queued).status is TaskStatus.PENDING  # no new claims after it
    assert "Traceback" not in worker.log


def test_a_task_calling_sys_exit_leaves_the_worker_running_and_stoppable(
    env: dict[str, str], start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("--import", "taskfns")
    with OmniQ.from_env() as oq:
        exits = oq.enqueue(taskfns.exit_now, max_retries=0)
        assert oq.get_result(exits, wait=True, timeout=30).error.type == "SystemExit"
        later = oq.enqueue(taskfns.add, args=(1, 2))
        assert oq.get_result(later, wait=True, timeout=30).unwrap() == 3
    worker.signal(signal.SIGTERM)  # the first one is heard
    assert worker.exit_code() == 0, worker.log


def test_second_signal_stops_at_once(
    env: dict[str, str], start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker("--import", "taskfns")
    marker = tmp_path / "started"
    with OmniQ.from_env() as oq:
        oq.enqueue(taskfns.block_until_killed, args=(str(marker), 60))
    wait_until_sync(marker.exists, timeout=30)

    worker.signal(signal.SIGTERM)
    worker.wait_for_log("stopping gracefully")  # the first signal was handled
    worker.signal(signal.SIGINT)

    # The grace period is 30 s and the task sleeps 60 s: only the second signal ends it this soon.
    assert worker.exit_code(timeout=10) == 128 + signal.SIGINT, worker.log
    assert "stopping at once" in worker.log and "Traceback" not in worker.log


# --- bad input -------------------------------------------------------------------------------


UNREACHABLE_POSTGRES = {
    "OMNIQ_TASK_QUEUE_TYPE": "postgres",
    "OMNIQ_TASK_QUEUE_URL": "postgresql://omniq@127.0.0.1:1/omniq",
    "OMNIQ_RESULT_STORAGE_TYPE": "none",
    "OMNIQ_EVENT_STORAGE_TYPE": "none",
}


@pytest.mark.parametrize(
    ("args", "extra_env", "fragment"),
    [
        pytest.param(["task", "no-such-id"], {}, "no task with id 'no-such-id'", id="task"),
        pytest.param(["cancel", "no-such-id"], {}, "no task with id", id="cancel"),
        pytest.param(["requeue", "no-such-id"], {}, "no task with id", id="requeue"),
        pytest.param(
            ["schedules", "pause", "no-such-id"], {}, "no schedule with id 'no-such-id'", id="pause"
        ),
        pytest.param(["schedules", "resume", "nope"], {}, "no schedule with id", id="resume"),
        pytest.param(["schedules", "delete", "nope"], {}, "no schedule with id", id="delete"),
        pytest.param(["schedules"], UNREACHABLE_POSTGRES, "127.0.0.1:1", id="schedules-server"),
        pytest.param(["--config", "missing.yaml", "status"], {}, "missing.yaml", id="config"),
        pytest.param(["worker", "--config", "missing.yaml"], {}, "missing.yaml", id="w-config"),
        pytest.param(["tasks"], {"OMNIQ_MAX_WORKERS": "zero"}, "OMNIQ_MAX_WORKERS", id="env-value"),
        pytest.param(["worker"], {"OMNIQ_DEFAULT_WORKER": "threads"}, "threads", id="env-worker"),
        pytest.param(["worker", "--import", "no_such_module"], {}, "no_such_module", id="import"),
        pytest.param(["status"], UNREACHABLE_POSTGRES, "127.0.0.1:1", id="server"),
        pytest.param(["worker"], UNREACHABLE_POSTGRES, "127.0.0.1:1", id="worker-server"),
    ],
)
def test_expected_failures_are_one_line(
    run: Run, args: list[str], extra_env: dict[str, str], fragment: str
) -> None:
    result = run(*args, extra_env=extra_env)

    assert_one_error_line(result, fragment)
    assert result.stdout == ""


SECRET = "S3cr3tPw"


@pytest.mark.parametrize(
    ("args", "url"),
    [
        pytest.param(["status"], f"nats://user:{SECRET}@127.0.0.1:1", id="nats"),
        pytest.param(["--json", "tasks"], f"nats://{SECRET}@127.0.0.1:1", id="nats-token"),
        pytest.param(["status"], f"postgresql://omniq:{SECRET}@127.0.0.1:1/omniq", id="postgres"),
        pytest.param(["worker"], f"postgresql://omniq:{SECRET}@127.0.0.1:1/omniq", id="worker"),
        pytest.param(["status"], f"ftp://user:{SECRET}@127.0.0.1:1", id="bad-scheme"),
    ],
)
def test_errors_show_no_credentials(run: Run, args: list[str], url: str) -> None:
    """Given a server URL with a password or token, a failing command prints neither."""
    env = {
        "OMNIQ_TASK_QUEUE_URL": url,
        "OMNIQ_RESULT_STORAGE_TYPE": "none",
        "OMNIQ_EVENT_STORAGE_TYPE": "none",
        "OMNIQ_LOG_LEVEL": "DEBUG",
    }
    result = run("--log-level", "DEBUG", *args, extra_env=env)

    assert result.returncode == 1, result.stderr
    assert "omniq: error: " in result.stderr and "127.0.0.1:1" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_unknown_variable_is_a_warning(run: Run) -> None:
    result = run("--json", "status", extra_env={"OMNIQ_MAX_WORKER": "3"})

    assert result.returncode == 0, result.stderr
    assert "did you mean OMNIQ_MAX_WORKERS" in result.stderr
    assert result.stderr.count("OMNIQ_MAX_WORKER ") == 1  # once, though read more than once


def test_bad_config_file_is_one_line(run: Run, tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("task_queue:\n  type: [sqlite\n")
    assert_one_error_line(run("--config", str(config), "status"), "broken.yaml", "line")
    config.write_text("task_queue:\n  typ: sqlite\n")
    assert_one_error_line(run("--config", str(config), "tasks"), "typ")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["worker", "--max-workers", "zero"], id="not-a-number"),
        pytest.param(["worker", "--max-workers", "0"], id="zero"),
        pytest.param(["worker", "--queues", ","], id="no-queue"),
        pytest.param(["worker", "--worker-type", "fibers"], id="worker-type"),
        pytest.param(["tasks", "--status", "done"], id="status"),
        pytest.param(["--log-level", "loud", "status"], id="log-level"),
        pytest.param(["task"], id="missing-id"),
        pytest.param(["schedules", "pause"], id="schedule-missing-id"),
        pytest.param(["schedules", "stop", "x"], id="schedule-command"),
        pytest.param(["frobnicate"], id="command"),
    ],
)
def test_usage_errors_are_click_lines(run: Run, args: list[str]) -> None:
    result = run(*args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("Error: ")
