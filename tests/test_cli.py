"""The ``omniq`` command end to end, in subprocesses, on a fresh embedded database each test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import taskfns

from omniq import OmniQ, TaskStatus


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMNIQ_")}
    clean["OMNIQ_BASE_DIR"] = str(tmp_path / "data")
    return clean


def omniq(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "omniq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def facade(env: dict[str, str]) -> OmniQ:
    return OmniQ(base_dir=env["OMNIQ_BASE_DIR"])


def test_inspection_commands(env: dict[str, str]) -> None:
    with facade(env) as oq:
        first = oq.enqueue(taskfns.add, args=(1, 2), queue_name="high")
        second = oq.enqueue(taskfns.noop, queue_name="low")
    status = omniq(env, "--json", "status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["queues"]["high"]["pending"] == 1
    tasks = json.loads(omniq(env, "--json", "tasks", "--queue", "low").stdout)
    assert [t["id"] for t in tasks] == [second]
    detail = json.loads(omniq(env, "--json", "task", first).stdout)
    assert detail["task"]["func_name"] == "taskfns:add"
    assert [e["type"] for e in detail["events"]] == ["enqueued"]
    table = omniq(env, "tasks")
    assert table.returncode == 0 and "taskfns:add" in table.stdout
    assert omniq(env, "cancel", second).returncode == 0
    assert omniq(env, "requeue", second).returncode == 0
    events = json.loads(omniq(env, "--json", "events", "--task", second).stdout)
    assert [e["type"] for e in events] == ["enqueued", "cancelled"]
    assert json.loads(omniq(env, "--json", "purge", "--yes").stdout) == {"purged": 2}
    refused = omniq(env, "purge")
    assert refused.returncode == 1 and "--yes" in refused.stderr


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_worker_runs_tasks_and_stops_gracefully(env: dict[str, str], tmp_path: Path) -> None:
    with facade(env) as oq:
        done = oq.enqueue(taskfns.add, args=(20, 22))
        worker = subprocess.Popen(
            [sys.executable, "-m", "omniq", "worker", "--import", "taskfns", "--max-workers", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert oq.get_result(done, wait=True, timeout=30).unwrap() == 42
            marker = tmp_path / "started"
            in_flight = oq.enqueue(taskfns.block_until_killed, args=(str(marker), 1.0))
            _wait_for(marker.exists)
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, stderr
        assert "Traceback" not in stderr and "stopping gracefully" in stderr
        assert oq.get_result(in_flight).status is TaskStatus.SUCCESS


def test_second_signal_stops_at_once(env: dict[str, str], tmp_path: Path) -> None:
    with facade(env) as oq:
        marker = tmp_path / "started"
        oq.enqueue(taskfns.block_until_killed, args=(str(marker), 60))
        worker = subprocess.Popen(
            [sys.executable, "-m", "omniq", "worker", "--import", "taskfns"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(marker.exists)
            worker.send_signal(signal.SIGINT)
            _wait_for(lambda: worker.stderr is not None)  # the first signal is being handled
            time.sleep(0.2)  # let the handler run before the second signal: timing is the subject
            worker.send_signal(signal.SIGINT)
            worker.communicate(timeout=15)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 1


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (["worker", "--max-workers", "zero"], {}, "'zero' is not a valid integer"),
        (["task", "no-such-id"], {}, "omniq: error: no task with id 'no-such-id'"),
        (["--config", "missing.yaml", "status"], {}, "does not exist"),
        (["status"], {"OMNIQ_MAX_WORKER": "3"}, "did you mean OMNIQ_MAX_WORKERS"),
        (["cancel", "nope"], {}, "does not exist or has already finished"),
        (["frobnicate"], {}, "No such command"),
    ],
)
def test_bad_input_is_one_clear_line(
    env: dict[str, str], args: list[str], env_extra: dict[str, str], message: str
) -> None:
    result = omniq({**env, **env_extra}, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
