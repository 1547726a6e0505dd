"""The file backend on S3 (moto's server, see tests/servers/s3.py), beyond the conformance
subset it runs: the store's race-deciding primitives between processes, and two ``omniq
worker`` processes sharing one ``s3://`` queue configured from a YAML file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import taskfns
from conftest import stop_process, wait_until_sync
from servers.s3 import S3Server

from omniq import OmniQ
from omniq.backends.file import s3
from omniq.backends.file.store import open_store
from omniq.errors import StorageError
from omniq.models import EventType, TaskStatus

_ROUNDS = 15
_RACERS = 3

# Each racer waits for the gate file, then races the others on every name: rename a shared
# source to a destination of its own, create a shared name, delete a shared file, and add one
# to a shared counter under the store's lock.
_RACER = """
import json, os, sys, time
from omniq.backends.file.store import open_store
base, options, project, gate, me = sys.argv[1:6]
store = open_store(base, json.loads(options), project)
while not os.path.exists(gate):
    time.sleep(0.005)
won = {"rename": [], "create": [], "unlink": []}
for i in range(int(sys.argv[6])):
    if store.rename(f"src/{i}", f"dst/{i}.{me}"):
        won["rename"].append(i)
    if store.create(f"keys/{i}", me.encode()):
        won["create"].append(i)
    if store.unlink(f"doomed/{i}"):
        won["unlink"].append(i)
    with store.locked("counter.lock"):
        count = int(store.read("counter") or b"0")
        store.write("counter", str(count + 1).encode())
print(json.dumps(won))
"""


def test_racing_processes_each_win_a_name_once(s3_server: S3Server, tmp_path: Path) -> None:
    """Given files on S3 and racers in separate processes, when all race on the same names,
    then each rename, create and delete has exactly one winner, no copy is left behind, and the
    lock let no increment of the counter be lost."""
    project, gate = f"t{uuid.uuid4().hex[:12]}", tmp_path / "go"
    base, options = s3_server.base_dir(), s3_server.storage_options
    store = open_store(base, options, project)
    for i in range(_ROUNDS):
        store.write(f"src/{i}", f"task {i}".encode())
        store.write(f"doomed/{i}", b"x")
    args = [base, json.dumps(options), project, str(gate)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, *args, str(n), str(_ROUNDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(_RACERS)
    ]
    try:
        gate.touch()
        outputs = [json.loads(racer.communicate(timeout=90)[0]) for racer in racers]
    finally:
        for racer in racers:
            stop_process(racer)
    for op in ("rename", "create", "unlink"):
        wins = sorted(i for won in outputs for i in won[op])
        assert wins == list(range(_ROUNDS)), op
    moved = sorted(store.listdir("dst"))
    assert len(moved) == _ROUNDS and {name.split(".")[0] for name in moved} == {
        str(i) for i in range(_ROUNDS)
    }
    assert store.listdir("src") == [] and store.listdir("doomed") == []
    assert store.read("counter") == str(_RACERS * _ROUNDS).encode()
    assert store.read("counter.lock") is None
    winners = {i: n for n, won in enumerate(outputs) for i in won["rename"]}
    for i in range(_ROUNDS):
        assert store.read(f"dst/{i}.{winners[i]}") == f"task {i}".encode()


def test_a_lock_left_by_a_dead_holder_is_taken_over_once_expired(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given lock objects on S3, a live one is waited for (then a StorageError), and one whose
    holder died (expired) is taken over and released."""
    monkeypatch.setattr(s3, "LOCK_WAIT", 0.3)
    store = open_store(s3_server.base_dir(), s3_server.storage_options, f"t{uuid.uuid4().hex}")
    store.write("live.lock", f"{time.time() + 60}".encode())
    with pytest.raises(StorageError, match="still taken"), store.locked("live.lock"):
        pass
    store.write("dead.lock", f"{time.time() - 1}".encode())
    with store.locked("dead.lock"):
        assert float(store.read("dead.lock") or 0) > time.time()
    assert store.read("dead.lock") is None


def test_two_worker_commands_drain_one_s3_queue(s3_server: S3Server, tmp_path: Path) -> None:
    """Given an ``s3://`` queue, results and events configured in omniq.yaml, when two ``omniq
    worker`` processes drain it, then every task runs once and its result and events are
    readable from the producer."""
    config = tmp_path / "omniq.yaml"
    located = {"base_dir": s3_server.base_dir(), "storage_options": s3_server.storage_options}
    section = json.dumps({"type": "file", "config": located})
    config.write_text(
        f"project_name: t{uuid.uuid4().hex[:12]}\n"
        f"task_queue: {section}\nresult_store: {section}\nevent_store: {section}\n"
    )
    log = tmp_path / "runs.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIQ_")}
    env["OMNIQ_POLL_INTERVAL"] = "0.05"
    command = [sys.executable, "-P", "-m", "omniq", "worker", "--config", str(config)]
    workers = [
        subprocess.Popen(
            [*command, "--max-workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        with OmniQ.from_config_file(str(config)) as oq:
            ids = [oq.enqueue(taskfns.record, args=(str(log), i)) for i in range(30)]
            wait_until_sync(
                lambda: oq.count(status=TaskStatus.SUCCESS) == len(ids), timeout=90, interval=0.2
            )
            assert [oq.get_result(task_id).unwrap() for task_id in ids] == list(range(30))
            # Events are written in batches after the statuses.
            wait_until_sync(
                lambda: EventType.COMPLETE in [e.type for e in oq.get_events(task_id=ids[-1])]
            )
            assert oq.get_events(task_id=ids[-1])[0].type is EventType.ENQUEUED
    finally:
        for worker in workers:
            stop_process(worker)
    assert sorted(int(x) for x in log.read_text().split()) == list(range(30))
    for worker in workers:
        assert worker.returncode == 0, worker.stderr.read().decode() if worker.stderr else ""
