"""Security on every backend: with a secret key, whole tasks, schedules and results are signed and
bound to their use; an allow-list limits what a worker runs; keyless workers on a network warn.

The attacks write straight into storage what someone without the key could write there: the
queue's own insert with payloads that a keyless serializer made or that were copied from another
task, so no enqueue-time check is involved.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import taskfns
from conftest import Storages
from test_worker_contract import make_worker

from omniq.config import Settings
from omniq.errors import SignatureError
from omniq.models import Schedule, TaskResult, TaskStatus, utcnow
from omniq.scheduling import AsyncScheduler
from omniq.serialization import Serializer
from omniq.task_function import TaskFunction
from omniq.workflows import build_workflow, call, chain

KEY = "conformance-secret"


@pytest.fixture
async def keyed(storages: Storages) -> AsyncIterator[Storages]:
    """The same storage and project, through components that sign with ``KEY``."""
    spec, project = storages.spec, storages.project
    args = {**spec.component_args(project), "serializer": Serializer(KEY)}
    queue = storages.queue if spec.name == "memory" else spec.build(spec.queue, project, args)
    if spec.name == "memory":
        queue.serializer = Serializer(KEY)  # memory storage lives in the object itself
    results = spec.build(spec.results, project, args)
    try:
        yield Storages(spec, project, queue, results, None)
    finally:
        if queue is not storages.queue:
            await queue.close()
        await results.close()


def _plain_queue(storages: Storages, project: str | None = None):
    """A keyless queue object of the same backend (used only to build tasks: no I/O)."""
    spec = storages.spec
    return spec.build(spec.queue, project or storages.project)


def _exec_writing(marker: Path) -> tuple[str, tuple[str]]:
    """An import-path call that would create ``marker`` if it ever ran."""
    return "builtins:exec", (f"open({str(marker)!r}, 'w').write('pwned')",)


async def _failed_with(keyed: Storages, task_id: str, error_type: str) -> TaskResult:
    result = await keyed.results.get(task_id, wait=True, timeout=20)
    assert result.status is TaskStatus.FAILED, result
    assert result.error.type == error_type, result.error
    assert result.attempts == 1  # refused for good: no retries
    return result


async def test_unsigned_import_path_task_never_runs_on_a_keyed_worker(
    storages: Storages, keyed: Storages, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    func, args = _exec_writing(marker)
    plain = _plain_queue(storages)
    forged = plain.build_task(func, args=args)  # MessagePack only: no pickle involved
    await plain.close()
    await keyed.queue.enqueue_tasks([forged])
    async with make_worker(keyed, "thread"):
        result = await _failed_with(keyed, forged.id, "SignatureError")
    assert "unsigned task payload" in result.error.message
    assert not marker.exists()


async def test_signed_payload_copied_to_another_task_or_project_is_refused(
    storages: Storages, keyed: Storages, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    func, args = _exec_writing(marker)
    victim = keyed.queue.build_task(func, args=args)  # signed, never stored
    elsewhere = _plain_queue(storages, project=f"{storages.project}x")
    elsewhere.serializer = Serializer(KEY)
    other_project = elsewhere.build_task(func, args=args)  # same key, another project
    await elsewhere.close()
    copied = keyed.queue.build_task(taskfns.noop).evolve(payload=victim.payload)
    moved = other_project.evolve(id=keyed.queue.build_task(taskfns.noop).id)
    await keyed.queue.enqueue_tasks([copied, moved])
    async with make_worker(keyed, "thread"):
        for task in (copied, moved):
            result = await _failed_with(keyed, task.id, "SignatureError")
            assert "does not match" in result.error.message
    assert not marker.exists()


async def test_tampered_payload_is_refused(keyed: Storages, tmp_path: Path) -> None:
    log = str(tmp_path / "ran.log")
    task = keyed.queue.build_task(taskfns.record, args=(log, 1))
    tampered = task.payload[:-1] + bytes([task.payload[-1] ^ 1])
    await keyed.queue.enqueue_tasks([task.evolve(payload=tampered)])
    async with make_worker(keyed, "async"):
        await _failed_with(keyed, task.id, "SignatureError")
    assert not Path(log).exists()


async def test_signed_tasks_schedules_and_workflows_run(keyed: Storages) -> None:
    q, results = keyed.queue, keyed.results
    scheduler = AsyncScheduler(q)
    schedule_id = await scheduler.add(taskfns.add, {"a": 2, "b": 3}, run_at=utcnow())
    (fired,) = await scheduler.run_pending()
    tasks, final_id = build_workflow(q, chain(call(taskfns.add, {"a": 1, "b": 2}), call(str)))
    await q.enqueue_tasks(tasks)
    by_value = await q.enqueue(lambda pair: pair[::-1], args=((1, "a"),))  # signed pickles
    async with make_worker(keyed, "thread", max_workers=4):
        assert (await results.get(fired, wait=True, timeout=20)).unwrap() == 5
        assert (await results.get(final_id, wait=True, timeout=20)).unwrap() == "3"
        assert (await results.get(by_value, wait=True, timeout=20)).unwrap() == ("a", 1)
    assert (await scheduler.get(schedule_id)).run_count == 1


async def test_a_tampered_schedule_fires_runs_that_fail(keyed: Storages, tmp_path: Path) -> None:
    q = keyed.queue
    marker = tmp_path / "pwned"
    scheduler = AsyncScheduler(q)
    schedule_id = await scheduler.add(taskfns.noop, run_at=utcnow())
    func, args = _exec_writing(marker)
    _, data = await q.get_record("schedule", schedule_id)
    schedule = msgspec.msgpack.decode(data, type=Schedule)
    forged = schedule.evolve(payload=Serializer().encode_call(func, args))
    await q.put_record("schedule", schedule_id, msgspec.msgpack.encode(forged))
    (fired,) = await scheduler.run_pending()
    async with make_worker(keyed, "thread"):
        await _failed_with(keyed, fired, "SignatureError")
    assert not marker.exists()


async def test_results_are_bound_to_their_task(keyed: Storages) -> None:
    results = keyed.results
    mine = TaskResult(task_id="a" * 32, status=TaskStatus.SUCCESS, value="for a")
    other = TaskResult(task_id="b" * 32, status=TaskStatus.SUCCESS, value="forged")
    await results.put(mine)
    ((_, signed_for_mine),) = results.encode_many([mine])
    await results._put_many([(other, signed_for_mine)])  # A's signed bytes under B's id
    with pytest.raises(SignatureError, match="does not match"):
        await results.get(other.task_id)
    written_without_key = Serializer().encode_result(other, keyed.project)
    await results._put_many([(other, written_without_key)])
    with pytest.raises(SignatureError, match="unsigned task result"):
        await results.get(other.task_id)
    assert (await results.get(mine.task_id)).value == "for a"


# --- allow-list -------------------------------------------------------------------------------


def _registered(func):
    return TaskFunction(func, lambda *args, **kwargs: None, {})


@_registered
def tripled(x: int) -> int:
    """An ``@oq.task`` function of this process: allowed without a pattern."""
    return 3 * x


async def test_allow_list_runs_only_allowed_functions(storages: Storages, tmp_path: Path) -> None:
    q, results = storages.queue, storages.results
    log = str(tmp_path / "ran.log")
    allowed = await q.enqueue(taskfns.add, {"a": 1, "b": 2})
    registered = await q.enqueue(tripled, args=(2,))
    refused = {
        await q.enqueue(taskfns.record, args=(log, 1)): "is not allowed",
        await q.enqueue("forbidden_tasks:run", args=(log,)): "is not allowed",
        await q.enqueue("taskfns:os.system", args=(f"touch {log}",)): "where it is defined",
        await q.enqueue(lambda: Path(log).touch()): "sent by value",
    }
    patterns = ["taskfns:a*", "taskfns:os.*"]
    async with make_worker(storages, "thread", allowed_functions=patterns):
        assert (await results.get(allowed, wait=True, timeout=20)).unwrap() == 3
        assert (await results.get(registered, wait=True, timeout=20)).unwrap() == 6
        for task_id, reason in refused.items():
            result = await results.get(task_id, wait=True, timeout=20)
            assert result.status is TaskStatus.FAILED and result.attempts == 1
            assert reason in result.error.message, result.error
    assert not Path(log).exists()
    assert "forbidden_tasks" not in sys.modules  # refused by name, never imported


async def test_allow_list_from_settings_accepts_dotted_patterns(storages: Storages) -> None:
    settings = Settings.from_env({"OMNIQ_ALLOWED_FUNCTIONS": "nothing:*, taskfns.add"})
    q, results = storages.queue, storages.results
    ok = await q.enqueue(taskfns.add, {"a": 2, "b": 2})
    no = await q.enqueue(taskfns.noop)
    async with make_worker(storages, "async", settings=settings) as worker:
        assert worker.allowed.patterns == ("nothing:*", "taskfns.add")
        assert (await results.get(ok, wait=True, timeout=20)).unwrap() == 4
        result = await results.get(no, wait=True, timeout=20)
    assert result.error.type == "FunctionNotAllowedError"


# --- the keyless warning ----------------------------------------------------------------------


async def test_a_keyless_worker_on_a_network_storage_warns_once(
    storages: Storages, keyed: Storages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="omniq")
    async with make_worker(storages, "async"):
        pass
    warned = [r for r in caplog.records if "no SECRET_KEY" in r.getMessage()]
    assert len(warned) == (1 if storages.queue.networked else 0)
    networked = ("postgres", "redis", "nats", "file-s3")
    assert storages.queue.networked == (storages.spec.name in networked)
    caplog.clear()
    async with make_worker(keyed, "async"):
        pass
    assert not [r for r in caplog.records if "no SECRET_KEY" in r.getMessage()]
