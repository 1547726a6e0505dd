"""File backend specifics, on a local directory and on memory:// : layout, claims, leases, crash
windows, corrupt files, several OS processes, results, events and the sync twins."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import modes_under

from omniq.backends.file import TaskDir, open_store
from omniq.backends.file import layout as L
from omniq.backends.file._twins import FileEventStorage, FileResultStorage, FileTaskQueue
from omniq.backends.file.queue import AsyncFileTaskQueue
from omniq.backends.file.storage import (
    AsyncFileEventStorage,
    AsyncFileResultStorage,
)
from omniq.errors import ConfigError, MissingDependencyError, SerializationError, StorageError
from omniq.models import (
    EventType,
    FileTaskQueueConfig,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    utcnow,
)

FUNC = "os.path:join"  # any importable function: these tests never run tasks


@pytest.fixture(params=["local", "memory"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "files")
    return f"memory://omniq-test-{uuid.uuid4().hex}"


@pytest.fixture
def project() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def queue(base: str, project: str):
    q = AsyncFileTaskQueue(base_dir=base, project_name=project)
    yield q
    await q.close()


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


async def claim_at(q: AsyncFileTaskQueue, worker: str, at: datetime, lease: float = 30.0):
    """Claim as if the clock read ``at`` (the primitive takes the time as an argument)."""
    return await q._claim(worker, None, 10, at, at + timedelta(seconds=lease), 10)


# --- queue ----------------------------------------------------------------------------------------


async def test_enqueue_get_list_count_purge(queue: AsyncFileTaskQueue) -> None:
    a = await queue.enqueue(FUNC, args=("a",), queue_name="q1")
    b = await queue.enqueue(FUNC, args=("b",), queue_name="q2", priority=7)
    c = await queue.enqueue(FUNC, args=("c",), queue_name="q2")
    task = await queue.get_task(b)
    assert (task.status, task.priority, task.queue_name) == (TaskStatus.PENDING, 7, "q2")
    assert queue.serializer.decode_call(task.payload)[1] == ["b"]
    assert await queue.get_task("missing") is None
    assert [t.id for t in await queue.list_tasks()] == [a, b, c]
    assert [t.id for t in await queue.list_tasks(queue_name="q2", limit=1)] == [b]
    counts = (await queue.count(), await queue.count("q2"), await queue.count(status="pending"))
    assert counts == (3, 2, 3)
    (running,) = await queue.claim("w", queues=["q1"])
    await queue.finish("w", [running.evolve(status=TaskStatus.SUCCESS)])
    assert await queue.count(status=TaskStatus.SUCCESS) == 1
    assert [t.id for t in await queue.list_tasks(status="success")] == [a]
    (running,) = await queue.claim("w", limit=1)
    assert running.id == b
    assert await queue.purge("q2") == 1  # c; b is running
    assert await queue.purge() == 1  # a, finished
    assert [t.id for t in await queue.list_tasks()] == [b]


async def test_claim_order_is_queue_then_priority_then_fifo(queue: AsyncFileTaskQueue) -> None:
    fifo = await queue.enqueue_many([{"func": FUNC, "queue_name": "low"} for _ in range(30)])
    urgent = await queue.enqueue(FUNC, queue_name="low", priority=9)
    high = await queue.enqueue(FUNC, queue_name="high", priority=-5)
    claimed = await queue.claim("w", queues=["high", "low"], limit=100)
    assert [t.id for t in claimed] == [high, urgent, *fifo]
    assert all(t.status is TaskStatus.RUNNING and t.attempts == 1 for t in claimed)


async def test_unnamed_queues_compete_by_priority_then_fifo(queue: AsyncFileTaskQueue) -> None:
    a = await queue.enqueue(FUNC, queue_name="x")
    b = await queue.enqueue(FUNC, queue_name="y", priority=1)
    c = await queue.enqueue(FUNC, queue_name="y")
    d = await queue.enqueue(FUNC, queue_name="x")
    assert [t.id for t in await queue.claim("w", limit=10)] == [b, a, c, d]


async def test_delayed_task_is_claimable_only_when_due(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC, run_in=timedelta(hours=1))
    assert await queue.claim("w") == []
    assert await claim_at(queue, "w", later(1800)) == []
    (task,) = await claim_at(queue, "w", later(3601))
    assert task.id == task_id and task.attempts == 1


async def test_lapsed_lease_is_reclaimed_and_stale_finish_refused(
    queue: AsyncFileTaskQueue,
) -> None:
    task_id = await queue.enqueue(FUNC)
    (first,) = await queue.claim("dead", lease_timeout=30)
    assert await claim_at(queue, "thief", later(29)) == []
    (second,) = await claim_at(queue, "rescuer", later(31))
    assert (second.id, second.attempts, second.worker_id) == (task_id, 2, "rescuer")
    stored = await queue.get_task(task_id)
    assert (stored.status, stored.attempts, stored.worker_id) == (TaskStatus.RUNNING, 2, "rescuer")
    assert stored.lease_until == second.lease_until
    assert await queue.renew("dead", [task_id], 30) == set()
    assert await queue.finish("dead", [first.evolve(status=TaskStatus.SUCCESS)]) == set()
    wrong_attempt = second.evolve(status=TaskStatus.SUCCESS, attempts=1)
    assert await queue.finish("rescuer", [wrong_attempt]) == set()
    assert await queue.finish("rescuer", [second.evolve(status=TaskStatus.SUCCESS)]) == {task_id}
    assert (await queue.get_task(task_id)).status is TaskStatus.SUCCESS


async def test_renew_moves_the_lease(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    await queue.claim("w", lease_timeout=5)
    assert await queue.renew("w", [task_id, "other"], 3600) == {task_id}
    assert (await queue.get_task(task_id)).lease_until > later(3000)
    assert await claim_at(queue, "thief", later(60)) == []
    assert await queue.renew("thief", [task_id], 10) == set()


async def test_retry_goes_back_to_pending_with_its_fifo_place(queue: AsyncFileTaskQueue) -> None:
    first = await queue.enqueue(FUNC)
    second = await queue.enqueue(FUNC)
    (task,) = await queue.claim("w", limit=1)
    retry = task.evolve(status=TaskStatus.RETRYING, run_at=later(60), worker_id=None)
    assert await queue.finish("w", [retry]) == {first}
    assert [t.id for t in await queue.claim("w", limit=5, lease_timeout=3600)] == [second]
    third = await queue.enqueue(FUNC)
    again, newer = await claim_at(queue, "w", later(61))
    assert (again.id, again.attempts, newer.id) == (first, 2, third)


async def test_idempotency_key(queue: AsyncFileTaskQueue) -> None:
    first = await queue.enqueue(FUNC, key="nightly")
    assert await queue.enqueue(FUNC, key="nightly") == first
    assert await queue.enqueue_many([{"func": FUNC, "key": "nightly"}]) == [first]
    (task,) = await queue.claim("w")
    assert await queue.enqueue(FUNC, key="nightly") == first  # running is live too
    await queue.finish("w", [task.evolve(status=TaskStatus.FAILED)])
    second = await queue.enqueue(FUNC, key="nightly")
    assert second != first
    assert await queue.purge() == 2
    assert await queue.enqueue(FUNC, key="nightly") not in (first, second)


async def test_cancel_and_requeue(queue: AsyncFileTaskQueue) -> None:
    pending = await queue.enqueue(FUNC, run_in=60)
    running = await queue.enqueue(FUNC)
    assert await queue.cancel(pending) is True
    assert await queue.cancel(pending) is False
    (task,) = await queue.claim("w")
    assert await queue.cancel(running) is True
    done = await queue.get_task(running)
    assert (done.status, done.attempts, done.lease_until) == (TaskStatus.CANCELLED, 1, None)
    assert await queue.renew("w", [running], 30) == set()  # the worker learns it lost the task
    assert await queue.finish("w", [task.evolve(status=TaskStatus.SUCCESS)]) == set()
    assert await queue.requeue(running) is True
    assert (await queue.get_task(running)).attempts == 0
    assert [t.id for t in await queue.claim("w")] == [running]
    assert await queue.requeue(running) is False


async def test_projects_are_isolated(base: str, project: str) -> None:
    mine = AsyncFileTaskQueue(base_dir=base, project_name=project)
    theirs = AsyncFileTaskQueue(base_dir=base, project_name=project + "-other")
    task_id = await mine.enqueue(FUNC)
    assert await theirs.get_task(task_id) is None
    assert (await theirs.count(), await theirs.claim("w"), await theirs.purge()) == (0, [], 0)
    assert await mine.count() == 1


async def test_layout_on_local_disk(tmp_path: Path, project: str) -> None:
    q = AsyncFileTaskQueue(base_dir=f"file://{tmp_path}", project_name=project)
    task_id = await q.enqueue(FUNC, queue_name="mail.out", priority=2)
    root = tmp_path / project / "queue"
    (pending,) = (root / "pending" / "mail%2Eout").iterdir()
    assert pending.name.endswith(f".p0.{task_id}")
    assert L.decode_record(pending.read_bytes()).task.id == task_id
    (task,) = await q.claim("worker-1", lease_timeout=30)
    (running,) = (root / "running").iterdir()
    parsed = L.parse_running(running.name)
    assert (parsed.eid, parsed.attempts, L.dt(parsed.lease_us)) == (task_id, 1, task.lease_until)
    await q.finish("worker-1", [task.evolve(status=TaskStatus.SUCCESS)])
    assert (root / "done" / task_id).is_file()
    assert not list((root / "running").iterdir()) and not list((root / "finishing").iterdir())


async def test_from_config_and_bad_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = FileTaskQueueConfig(project_name="cfg", base_dir=str(tmp_path), queues=["a", "b"])
    q = AsyncFileTaskQueue.from_config(config)
    assert q.queues == ["a", "b"] and q.project_name == "cfg"
    results = AsyncFileResultStorage.from_dict({"base_dir": str(tmp_path), "project_name": "cfg"})
    await results.put(TaskResult(task_id="t", status=TaskStatus.SUCCESS, value=1))
    assert (tmp_path / "cfg" / "results" / "t").is_file()
    with pytest.raises(ConfigError, match="base_dir"):
        AsyncFileTaskQueue(base_dir=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Protocol not known"):
        AsyncFileEventStorage(base_dir="nosuchproto://x")

    def without_s3fs(url: str, **options: object) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr("omniq.backends.file.store.url_to_fs", without_s3fs)
    with pytest.raises(MissingDependencyError, match=r"omniq\[s3\]"):
        AsyncFileTaskQueue(base_dir="s3://bucket/prefix")
    with pytest.raises(ConfigError, match="storage_options"):
        AsyncFileTaskQueue(base_dir=str(tmp_path), storage_options=["x"])  # type: ignore[arg-type]


async def test_filesystem_errors_become_storage_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    q = AsyncFileTaskQueue(base_dir=str(blocker), project_name="p")
    with pytest.raises(StorageError) as caught:
        await q.enqueue(FUNC)
    assert isinstance(caught.value.__cause__, OSError)


async def test_wait_for_tasks_wakes_on_enqueue(queue: AsyncFileTaskQueue) -> None:
    from conftest import wait_until

    waiter = asyncio.create_task(queue.wait_for_tasks(60))
    await wait_until(lambda: bool(queue._channel._waiters))
    await queue.enqueue(FUNC)
    await asyncio.wait_for(waiter, 5)


async def test_wait_for_tasks_sees_other_processes_on_local_disk(
    tmp_path: Path, project: str
) -> None:
    queue = AsyncFileTaskQueue(base_dir=str(tmp_path), project_name=project)
    await queue.enqueue(FUNC, queue_name="mail")  # directories exist; no lease timer is set
    waiter = asyncio.create_task(queue.wait_for_tasks(60, ["mail"]))
    from conftest import wait_until

    await wait_until(lambda: bool(queue._channel._waiters))
    # Another process writes through the engine: no in-process notification reaches the waiter.
    elsewhere = TaskDir(open_store(str(tmp_path), None, project))
    await asyncio.to_thread(elsewhere.insert, [queue.build_task(FUNC, queue_name="mail")])
    await asyncio.wait_for(waiter, 5)


async def test_wait_for_tasks_wakes_when_a_delayed_task_falls_due(
    queue: AsyncFileTaskQueue,
) -> None:
    await queue.enqueue(FUNC, run_in=0.3)
    assert await queue.claim("w") == []
    started = time.monotonic()
    await queue.wait_for_tasks(60)
    assert time.monotonic() - started < 5
    assert len(await queue.claim("w")) == 1


# --- crash windows and corrupt files --------------------------------------------------------------


async def test_corrupt_task_file_is_claimed_failed_and_kept(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    store = queue._dir.store
    (name,) = store.listdir(f"{L.PENDING}/default")
    store.write(f"{L.PENDING}/default/{name}", b"\xc1 not msgpack")
    listed = await queue.get_task(task_id)
    assert listed.status is TaskStatus.PENDING and listed.payload == b""
    (task,) = await queue.claim("w")
    assert (task.id, task.payload, task.max_retries) == (task_id, b"", 0)
    assert task.status is TaskStatus.RUNNING and task.error.type == "CorruptTask"
    assert "task file" in task.error.message
    with pytest.raises(SerializationError, match="corrupt"):
        queue.serializer.decode_call(task.payload)
    failed = task.evolve(
        status=TaskStatus.FAILED, error=TaskError(type="SerializationError", message="corrupt")
    )
    assert await queue.finish("w", [failed]) == {task_id}
    assert (await queue.get_task(task_id)).status is TaskStatus.FAILED
    assert await claim_at(queue, "w", later(3600)) == []
    assert await queue.count() == 1


async def test_corrupt_running_file_comes_back_after_its_lease(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC, queue_name="q")
    await queue.claim("dead", lease_timeout=30)
    store = queue._dir.store
    (name,) = store.listdir(L.RUNNING)
    store.write(f"{L.RUNNING}/{name}", b"")
    (task,) = await claim_at(queue, "w", later(31))
    assert (task.id, task.attempts, task.payload) == (task_id, 2, b"")


async def test_crash_inside_finish_reruns_the_task(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    await queue.claim("dead")
    store = queue._dir.store
    (name,) = store.listdir(L.RUNNING)
    r = L.parse_running(name)
    # The finisher renamed the entry to finishing/ and died before writing the outcome.
    store.rename(f"{L.RUNNING}/{name}", f"{L.FINISHING}/{L.finishing_name(r.eid, r.seq, 1, 0)}")
    in_flight = await queue.get_task(task_id)  # shown as the attempt it was, not as pending
    assert (in_flight.status, in_flight.attempts) == (TaskStatus.RUNNING, 1)
    assert await queue.count(status="running") == 1
    (task,) = await claim_at(queue, "w", later(1))
    assert (task.id, task.attempts, task.worker_id) == (task_id, 2, "w")
    assert store.listdir(L.FINISHING) == []


async def test_crash_after_finish_write_only_cleans_up(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    (task,) = await queue.claim("w")
    store = queue._dir.store
    (name,) = store.listdir(L.RUNNING)
    r = L.parse_running(name)
    leftover = store.read(f"{L.RUNNING}/{name}")
    await queue.finish("w", [task.evolve(status=TaskStatus.SUCCESS)])
    # As if the finisher died between writing done/ and unlinking its finishing entry.
    store.write(f"{L.FINISHING}/{L.finishing_name(r.eid, r.seq, 1, 0)}", leftover)
    assert await claim_at(queue, "w", later(1)) == []
    assert store.listdir(L.FINISHING) == []
    assert (await queue.get_task(task_id)).status is TaskStatus.SUCCESS


async def test_interrupted_requeue_is_undone(queue: AsyncFileTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    (task,) = await queue.claim("w")
    await queue.finish("w", [task.evolve(status=TaskStatus.FAILED)])
    store = queue._dir.store
    seq = L.decode_record(store.read(f"{L.DONE}/{task_id}")).seq
    store.rename(f"{L.DONE}/{task_id}", f"{L.FINISHING}/{L.finishing_name(task_id, seq, 1, 0)}")
    assert await claim_at(queue, "w", later(1)) == []
    assert (await queue.get_task(task_id)).status is TaskStatus.FAILED
    assert await queue.requeue(task_id) is True


# --- several OS processes on one local directory -------------------------------------------------


def _claim_until_empty(base: str, project: str, gate, out, worker: str) -> None:
    queue = FileTaskQueue(base_dir=base, project_name=project)
    gate.wait(60)  # all three start together...
    first = queue.claim(worker, limit=2)
    gate.wait(60)  # ...and each holds a claim before any goes on: they really overlap
    mine: list[str] = []
    batch = first
    while batch:
        mine.extend(t.id for t in batch)
        queue.finish(worker, [t.evolve(status=TaskStatus.SUCCESS) for t in batch])
        batch = queue.claim(worker, limit=2)
    out.put(mine)


def _enqueue_keys(base: str, project: str, gate, out, worker: str) -> None:
    queue = FileTaskQueue(base_dir=base, project_name=project)
    gate.wait(60)
    out.put({f"k{i}": queue.enqueue(FUNC, key=f"k{i}") for i in range(30)})


def _run_processes(target, base: str, project: str) -> list:
    ctx = multiprocessing.get_context("spawn")
    gate, out = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(base, project, gate, out, f"proc-{n}")) for n in range(3)
    ]
    for proc in procs:
        proc.start()
    try:
        return [out.get(timeout=90) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0


@pytest.mark.slow
def test_three_processes_claim_each_task_exactly_once(tmp_path: Path, project: str) -> None:
    base = str(tmp_path / "files")
    with FileTaskQueue(base_dir=base, project_name=project) as queue:
        ids = queue.enqueue_many([{"func": FUNC, "args": (i,)} for i in range(300)])
        per_process = _run_processes(_claim_until_empty, base, project)
        claimed = [task_id for mine in per_process for task_id in mine]
        assert len(claimed) == 300 and sorted(claimed) == sorted(ids)
        assert all(per_process)  # every process took part
        assert queue.count(status=TaskStatus.SUCCESS) == 300


@pytest.mark.slow
def test_three_processes_share_idempotency_keys(tmp_path: Path, project: str) -> None:
    base = str(tmp_path / "files")
    first, *others = _run_processes(_enqueue_keys, base, project)
    assert all(other == first for other in others)
    with FileTaskQueue(base_dir=base, project_name=project) as queue:
        assert queue.count() == 30


# --- results --------------------------------------------------------------------------------------


@pytest.fixture
async def results(base: str, project: str):
    store = AsyncFileResultStorage(base_dir=base, project_name=project)
    yield store
    await store.close()


async def test_results_put_get_delete(results: AsyncFileResultStorage) -> None:
    assert await results.get("nope") is None
    await results.put(TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value={"n": [1, 2]}))
    assert (await results.get("t1")).unwrap() == {"n": [1, 2]}
    await results.put(TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value=2))
    assert (await results.get("t1")).value == 2
    assert await results.delete("t1") is True
    assert await results.delete("t1") is False


async def test_results_wait_wakes_promptly_and_times_out(results: AsyncFileResultStorage) -> None:
    with pytest.raises(TimeoutError):
        await results.get("late", wait=True, timeout=0.2)
    waiter = asyncio.create_task(results.get("late", wait=True, timeout=30))
    started = time.monotonic()
    await results.put(TaskResult(task_id="late", status=TaskStatus.SUCCESS, value="here"))
    assert (await waiter).value == "here"
    assert time.monotonic() - started < 1.0


async def test_results_expire_and_are_cleaned_up(results: AsyncFileResultStorage) -> None:
    await results.put_many(
        [
            TaskResult(task_id="old", status=TaskStatus.SUCCESS, expires_at=later(-1)),
            TaskResult(task_id="new", status=TaskStatus.SUCCESS, expires_at=later(3600)),
            TaskResult(task_id="kept", status=TaskStatus.SUCCESS),
        ]
    )
    assert await results.get("old") is None  # expired results are not served
    assert await results.cleanup_expired() == 1
    assert await results.cleanup_expired() == 0
    assert await results.get("new") is not None and await results.get("kept") is not None


# --- events ---------------------------------------------------------------------------------------


def _event(task_id: str, kind: EventType, at: datetime, **extra) -> TaskEvent:
    return TaskEvent(task_id=task_id, type=kind, timestamp=at, **extra)


async def test_events_query_filters_and_order(base: str, project: str) -> None:
    events = AsyncFileEventStorage(base_dir=base, project_name=project)
    day1 = datetime(2030, 5, 1, 23, 59, 59, tzinfo=UTC)
    day2 = day1 + timedelta(seconds=2)
    await events.log_many(
        [
            _event("a", EventType.EXECUTING, day2, worker_id="w"),
            _event("a", EventType.ENQUEUED, day1, queue_name="q"),
        ]
    )
    await events.log(_event("b", EventType.COMPLETE, day2, duration=0.5))  # same time, later write
    boom = TaskError(type="ValueError", message="boom")
    await events.log(_event("a", EventType.ERROR, day2 + timedelta(1), error=boom))
    everything = await events.get_events()
    order = [(e.task_id, e.type.value) for e in everything]
    assert order == [("a", "enqueued"), ("a", "executing"), ("b", "complete"), ("a", "error")]
    assert everything[3].error == boom and everything[2].duration == 0.5
    first_two = await events.get_events(task_id="a", limit=2)
    assert [e.type.value for e in first_two] == ["enqueued", "executing"]
    assert len(await events.get_events(event_type="complete")) == 1
    assert len(await events.get_events(since=day2, until=day2)) == 2
    assert await events.get_events(since=day2 + timedelta(days=2)) == []
    assert await events.delete_before(day2) == 1
    assert len(await events.get_events()) == 3
    assert await events.delete_before(day2 + timedelta(days=5)) == 3
    assert await events.get_events() == []


async def test_events_are_plain_json_lines(tmp_path: Path, project: str) -> None:
    events = AsyncFileEventStorage(base_dir=str(tmp_path), project_name=project)
    await events.log(_event("t", EventType.RETRY, utcnow(), attempt=2))
    (day,) = (tmp_path / project / "events").iterdir()
    (batch,) = day.iterdir()
    (line,) = batch.read_text().splitlines()
    assert json.loads(line)["type"] == "retry" and json.loads(line)["attempt"] == 2


# --- sync twins -----------------------------------------------------------------------------------


def test_sync_twins(base: str, project: str) -> None:
    with FileTaskQueue(base_dir=base, project_name=project) as queue:
        task_id = queue.enqueue(FUNC, args=("x",))
        (task,) = queue.claim("w")
        assert queue.finish("w", [task.evolve(status=TaskStatus.SUCCESS)]) == {task_id}
        assert queue.get_task(task_id).status is TaskStatus.SUCCESS
    with FileResultStorage(base_dir=base, project_name=project) as results:
        results.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=1))
        assert results.get(task_id, wait=True, timeout=5).value == 1
    with FileEventStorage(base_dir=base, project_name=project) as events:
        events.log(_event(task_id, EventType.COMPLETE, utcnow()))
        assert [e.task_id for e in events.get_events()] == [task_id]


# --- file permissions -----------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
async def test_files_and_directories_are_private(tmp_path: Path, project: str) -> None:
    """Given umask 022, every directory and file the three components create (tasks, locks,
    results, JSON events) is the owner's only."""
    root = tmp_path / "new"
    queue = AsyncFileTaskQueue(base_dir=root / "files", project_name=project)
    results = AsyncFileResultStorage(base_dir=root / "files", project_name=project)
    events = AsyncFileEventStorage(base_dir=root / "files", project_name=project)
    try:
        task_id = await queue.enqueue(FUNC, key="k")
        (task,) = await queue.claim("w")
        await results.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=1))
        await events.log(_event(task_id, EventType.ENQUEUED, utcnow()))
        await queue.finish("w", [task.evolve(status=TaskStatus.SUCCESS)])
    finally:
        for component in (queue, results, events):
            await component.close()
    modes = modes_under(root)
    assert len(modes) > 10
    wrong = {
        path: oct(mode)
        for path, mode in modes.items()
        if mode != (0o700 if (root / path).is_dir() else 0o600)
    }
    assert wrong == {}


async def test_a_shared_base_dir_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    AsyncFileTaskQueue(base_dir=shared)
    AsyncFileResultStorage(base_dir=shared)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{shared} is writable by its group" in warnings[0]
