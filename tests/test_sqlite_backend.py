"""SQLite-specific behaviour: storage layout, transactions across connections and processes,
wake-ups, corrupt rows, sync twins. The shared contract is in tests/conformance/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import modes_under

from omniq.backends.sqlite import connection
from omniq.backends.sqlite._twins import SQLiteEventStorage, SQLiteResultStorage, SQLiteTaskQueue
from omniq.backends.sqlite.queue import AsyncSQLiteTaskQueue
from omniq.backends.sqlite.sql import QUERIES, SCHEMA_VERSION
from omniq.backends.sqlite.storage import (
    AsyncSQLiteEventStorage,
    AsyncSQLiteResultStorage,
)
from omniq.config import Settings
from omniq.errors import ConfigError, SerializationError, StorageError
from omniq.models import (
    EventType,
    SQLiteEventStorageConfig,
    SQLiteResultStorageConfig,
    SQLiteTaskQueueConfig,
    Task,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    utcnow,
)

FUNC = "os:getcwd"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "omniq.db")


@pytest.fixture
async def queue(db: str) -> AsyncIterator[AsyncSQLiteTaskQueue]:
    q = AsyncSQLiteTaskQueue(db_path=db, project_name="p")
    yield q
    await q.close()


@contextlib.contextmanager
def _raw(db: str) -> Iterator[sqlite3.Connection]:
    """A plain connection of our own, as another program would open the file."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


async def _claim_at(q: AsyncSQLiteTaskQueue, worker: str, seconds_from_now: float) -> list[Task]:
    """Claim as if the clock read now + ``seconds_from_now`` (no sleeping)."""
    now = utcnow() + timedelta(seconds=seconds_from_now)
    return await q._claim(worker, None, 10, now, now + timedelta(seconds=30), 10)


# --- storage and queries -------------------------------------------------------------------------


async def test_a_task_round_trips_every_field(queue: AsyncSQLiteTaskQueue) -> None:
    task = queue.build_task(
        FUNC, {"a": 1}, args=(2,), queue_name="q1", priority=7, run_in=5, ttl=60, result_ttl=9,
        max_retries=4, retry_delay=0.5, timeout=3, key="k", schedule_id="s",
    )  # fmt: skip
    assert await queue._insert([task]) == [task.id]
    assert await queue.get_task(task.id) == task
    error = TaskError(type="ValueError", message="bad", traceback="tb")
    changed = await queue._transition(
        task.id, (TaskStatus.PENDING,), status=TaskStatus.FAILED, error=error, finished_at=utcnow()
    )
    assert changed is not None and await queue.get_task(task.id) == changed
    assert changed.error == error


async def test_list_count_purge(queue: AsyncSQLiteTaskQueue) -> None:
    a = await queue.enqueue(FUNC, queue_name="a")
    b = [await queue.enqueue(FUNC, queue_name="b") for _ in range(3)]
    assert [t.id for t in await queue.list_tasks()] == [a, *b]
    assert [t.id for t in await queue.list_tasks(queue_name="b", limit=2)] == b[:2]
    (running,) = await queue.claim("w", queues=["b"])
    assert [t.id for t in await queue.list_tasks(status="pending")] == [a, b[1], b[2]]
    assert [t.id for t in await queue.list_tasks(queue_name="b", status="running")] == [running.id]
    assert await queue.count() == 4
    assert await queue.count(queue_name="b", status=TaskStatus.PENDING) == 2
    assert await queue.purge("b") == 2
    assert await queue.purge() == 1
    assert [t.id for t in await queue.list_tasks()] == [running.id]


async def test_claim_order_is_queue_then_priority_then_fifo(queue: AsyncSQLiteTaskQueue) -> None:
    low_a = await queue.enqueue(FUNC, queue_name="low", priority=50)
    high_1 = await queue.enqueue(FUNC, queue_name="high")
    high_urgent = await queue.enqueue(FUNC, queue_name="high", priority=3)
    high_2 = await queue.enqueue(FUNC, queue_name="high")
    low_b = await queue.enqueue(FUNC, queue_name="low", priority=50)
    await queue.enqueue(FUNC, queue_name="ignored", priority=99)
    claimed = await queue.claim("w", queues=["high", "low"], limit=4)
    assert [t.id for t in claimed] == [high_urgent, high_1, high_2, low_a]
    assert [t.id for t in await queue.claim("w", queues=["high", "low"], limit=4)] == [low_b]


async def test_lapsed_lease_competes_in_order_and_counts_an_attempt(
    queue: AsyncSQLiteTaskQueue,
) -> None:
    first = await queue.enqueue(FUNC, priority=1)
    (lost,) = await queue.claim("dead", limit=1)
    second = await queue.enqueue(FUNC, priority=1)
    assert lost.id == first and lost.attempts == 1
    claimed = await _claim_at(queue, "other", 60)
    assert [(t.id, t.attempts, t.worker_id) for t in claimed] == [
        (first, 2, "other"),  # the lapsed one keeps its FIFO place ahead of the newer task
        (second, 1, "other"),
    ]


async def test_delayed_task_is_not_claimed_before_its_time(queue: AsyncSQLiteTaskQueue) -> None:
    later = await queue.enqueue(FUNC, run_in=timedelta(hours=1), priority=9)
    now = await queue.enqueue(FUNC)
    assert [t.id for t in await queue.claim("w", limit=10, lease_timeout=7200)] == [now]
    assert await _claim_at(queue, "w", 3500) == []
    assert [t.id for t in await _claim_at(queue, "w", 3700)] == [later]


async def test_finish_is_compare_and_set(queue: AsyncSQLiteTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    (stale,) = await queue.claim("old", limit=1)
    (fresh,) = await _claim_at(queue, "new", 60)
    done = stale.evolve(status=TaskStatus.SUCCESS, finished_at=utcnow())
    assert await queue.finish("old", [done]) == set()  # another worker holds it now
    assert await queue.finish("new", [done]) == set()  # right worker, stale attempt count
    retry = fresh.evolve(status=TaskStatus.RETRYING, run_at=utcnow(), lease_until=None)
    assert await queue.finish("new", [retry]) == {task_id}
    stored = await queue.get_task(task_id)
    assert stored.status is TaskStatus.RETRYING and stored.attempts == 2
    assert [t.id for t in await queue.claim("w")] == [task_id]


async def test_renew_only_for_the_holder(queue: AsyncSQLiteTaskQueue) -> None:
    a, b = await queue.enqueue(FUNC), await queue.enqueue(FUNC)
    await queue.claim("w", limit=2)
    await queue.cancel(b)
    assert await queue.renew("w", [a, b, "nope"], 60) == {a}
    assert await queue.renew("thief", [a], 60) == set()
    assert (await queue.get_task(a)).lease_until > utcnow() + timedelta(seconds=50)


async def test_idempotency_keys(queue: AsyncSQLiteTaskQueue, db: str) -> None:
    keys = ["a", None, "a", "b"]
    ids = await queue.enqueue_many([{"func": FUNC, "key": key} for key in keys])
    assert ids[0] == ids[2] and len(set(ids)) == 3
    assert await queue.enqueue(FUNC, key="a") == ids[0]
    assert await queue.count() == 3
    other = AsyncSQLiteTaskQueue(db_path=db, project_name="other-project")
    try:
        assert await other.enqueue(FUNC, key="a") != ids[0]  # keys are per project
    finally:
        await other.close()
    await queue.cancel(ids[0])
    reused = await queue.enqueue(FUNC, key="a")  # a final task frees its key
    assert reused != ids[0]
    with pytest.raises(StorageError, match="idempotency key"):
        await queue.requeue(ids[0])  # would make two live tasks with key "a"
    assert (await queue.get_task(ids[0])).status is TaskStatus.CANCELLED


async def test_cancel_and_requeue(queue: AsyncSQLiteTaskQueue) -> None:
    task_id = await queue.enqueue(FUNC)
    (task,) = await queue.claim("w")
    assert await queue.cancel(task_id) is True  # running: cancelled, the worker's result refused
    assert await queue.finish("w", [task.evolve(status=TaskStatus.SUCCESS)]) == set()
    assert await queue.cancel(task_id) is False
    assert await queue.requeue(task_id) is True
    task = await queue.get_task(task_id)
    assert task.status is TaskStatus.PENDING and task.attempts == 0
    assert task.worker_id is task.finished_at is None
    assert await queue.requeue(task_id) is False
    assert await queue.requeue("missing") is False


async def test_projects_share_a_file_but_not_rows(db: str) -> None:
    mine, theirs = (AsyncSQLiteTaskQueue(db_path=db, project_name=p) for p in ("mine", "theirs"))
    my_events, their_events = (
        AsyncSQLiteEventStorage(db_path=db, project_name=p) for p in ("mine", "theirs")
    )
    my_results, their_results = (
        AsyncSQLiteResultStorage(db_path=db, project_name=p) for p in ("mine", "theirs")
    )
    try:
        task_id = await mine.enqueue(FUNC)
        await my_results.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=1))
        await my_events.log(TaskEvent(task_id=task_id, type=EventType.ENQUEUED, timestamp=utcnow()))
        assert await theirs.count() == 0 and await theirs.list_tasks() == []
        assert await theirs.get_task(task_id) is None
        assert await theirs.claim("w", limit=5) == [] and await theirs.purge() == 0
        assert await theirs.cancel(task_id) is False
        assert await their_results.get(task_id) is None
        assert await their_results.delete(task_id) is False
        assert await their_events.get_events() == []
        assert [t.id for t in await mine.claim("w")] == [task_id]
        assert (await my_results.get(task_id)).value == 1 and len(await my_events.get_events()) == 1
    finally:
        for c in (mine, theirs, my_events, their_events, my_results, their_results):
            await c.close()


async def test_claim_uses_partial_indexes(queue: AsyncSQLiteTaskQueue, db: str) -> None:
    await queue.count()  # creates the schema
    params = {"project": "p", "queue_name": "q", "now": 0.0, "limit": 1, "seqs": "[1]"}
    params |= {"counted": "[1]", "batch": "[]"}
    params |= {"worker_id": "w", "lease_until": 1.0}
    with _raw(db) as conn:
        plans = {
            name: " | ".join(
                row["detail"] for row in conn.execute("EXPLAIN QUERY PLAN " + QUERIES[name], params)
            )
            for name in (
                "ready_in_queue",
                "ready_in_any_queue",
                "lapsed_leases",
                "take",
                "mark_started",
            )
        }
    by_queue = "USING INDEX omniq_tasks_ready_by_queue (project=? AND queue_name=?)"
    assert by_queue in plans["ready_in_queue"]
    assert "USING INDEX omniq_tasks_ready (project=?)" in plans["ready_in_any_queue"]
    assert "USING INDEX omniq_tasks_leases (project=? AND lease_until<?)" in plans["lapsed_leases"]
    assert "USING INTEGER PRIMARY KEY" in plans["take"]
    assert "USING INDEX omniq_tasks_id (project=? AND id=?)" in plans["mark_started"]
    assert not any("TEMP B-TREE" in plan or "SCAN omniq_tasks" in plan for plan in plans.values())


# --- connections, processes, wake-ups ------------------------------------------------------------


async def test_two_objects_on_one_file_share_tasks_and_wake_each_other(db: str) -> None:
    producer, consumer = AsyncSQLiteTaskQueue(db_path=db), AsyncSQLiteTaskQueue(db_path=db)
    try:
        assert await consumer.claim("w") == []
        waiting = asyncio.create_task(consumer.wait_for_tasks(60))
        task_id = await producer.enqueue(FUNC)
        await asyncio.wait_for(waiting, 10)
        assert [t.id for t in await consumer.claim("w")] == [task_id]
        assert await producer.claim("x") == []
    finally:
        await producer.close()
        await consumer.close()


async def test_wait_for_tasks_lasts_its_timeout_when_nothing_comes(
    queue: AsyncSQLiteTaskQueue,
) -> None:
    started = time.monotonic()
    await asyncio.wait_for(queue.wait_for_tasks(0.3), 5)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert await queue.claim("w") == []


async def test_wait_for_tasks_returns_early_on_an_enqueue_or_a_due_task(
    queue: AsyncSQLiteTaskQueue,
) -> None:
    waiting = asyncio.create_task(queue.wait_for_tasks(60))
    started = time.monotonic()
    task_id = await queue.enqueue(FUNC)
    await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 2.0  # woken by the write, not by the 60 s timeout
    assert [t.id for t in await queue.claim("w")] == [task_id]
    delayed = await queue.enqueue(FUNC, run_in=0.3)
    started = time.monotonic()
    await asyncio.wait_for(queue.wait_for_tasks(60), 10)  # until the delayed task is due
    assert 0.2 <= time.monotonic() - started < 2.0
    assert [t.id for t in await queue.claim("w")] == [delayed]


def _enqueue_in_process(db: str, ready: Any) -> None:
    ready.wait(60)
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        q.enqueue(FUNC, queue_name="from-child")


async def test_another_process_wakes_a_waiting_queue(queue: AsyncSQLiteTaskQueue, db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_enqueue_in_process, args=(db, ready))
    child.start()
    try:
        assert await queue.claim("w") == []
        started = time.monotonic()
        waiting = asyncio.create_task(queue.wait_for_tasks(60))
        ready.set()
        await asyncio.wait_for(waiting, 30)
        assert time.monotonic() - started < 30  # woken by the commit, not by the 60 s timeout
        assert [t.queue_name for t in await queue.claim("w")] == ["from-child"]
    finally:
        await asyncio.to_thread(child.join, 30)
    assert child.exitcode == 0


def _in_processes(target: Any, db: str, n: int = 3) -> list[Any]:
    """Run ``target(db, barrier, out)`` in ``n`` spawned processes; what each put in ``out``."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(db, start, out)) for _ in range(n)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return results


def _claim_all_in_process(db: str, start: Any, out: Any) -> None:
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        start.wait(60)
        ids: list[str] = []
        while batch := q.claim(f"worker-{os.getpid()}", limit=3):
            ids.extend(t.id for t in batch)
        out.put(ids)


def test_three_processes_claim_each_task_exactly_once(db: str) -> None:
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        ids = q.enqueue_many([{"func": FUNC, "priority": i % 3} for i in range(500)])
    every = [task_id for batch in _in_processes(_claim_all_in_process, db) for task_id in batch]
    assert len(every) == 500 and sorted(every) == sorted(ids)
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        assert q.count(status="running") == 500
        assert {t.attempts for t in q.list_tasks(limit=500)} == {1}


def _enqueue_in_fresh_file(db: str, start: Any, out: Any) -> None:
    start.wait(60)
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        out.put(q.enqueue_many([{"func": FUNC, "key": f"k{i % 10}"} for i in range(50)]))


def test_processes_create_the_schema_and_insert_at_once(db: str) -> None:
    batches = _in_processes(_enqueue_in_fresh_file, db)
    # ten keys, all live: whoever inserted first owns each key, the others got its id
    assert len({task_id for batch in batches for task_id in batch}) == 10
    with SQLiteTaskQueue(db_path=db, project_name="p") as q:
        assert q.count() == 10


async def test_schema_creation_is_safe_when_many_open_at_once(db: str) -> None:
    queues = [AsyncSQLiteTaskQueue(db_path=db) for _ in range(6)]
    try:
        assert await asyncio.gather(*(q.count() for q in queues)) == [0] * 6
    finally:
        for q in queues:
            await q.close()
    with _raw(db) as conn:
        version = conn.execute("SELECT value FROM omniq_meta WHERE name = 'schema_version'")
        assert int(version.fetchone()["value"]) == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"] == "wal"
        conn.execute("UPDATE omniq_meta SET value = value + 1 WHERE name = 'schema_version'")
    newer = AsyncSQLiteTaskQueue(db_path=db)
    with pytest.raises(StorageError, match="upgrade OmniQ"):
        await newer.count()
    await newer.close()


def test_one_object_serves_several_event_loops_and_reopens_after_close(db: str) -> None:
    q = AsyncSQLiteTaskQueue(db_path=db)
    task_id = asyncio.run(q.enqueue(FUNC))
    assert asyncio.run(q.get_task(task_id)).id == task_id
    asyncio.run(q.close())
    assert q._runner._runner is None  # the handle released the shared connection
    assert asyncio.run(q.count()) == 1
    asyncio.run(q.close())


def _count_after_fork(q: AsyncSQLiteTaskQueue, out: Any) -> None:
    out.put(asyncio.run(q.count()))


async def test_forked_child_opens_its_own_connection(queue: AsyncSQLiteTaskQueue) -> None:
    await queue.enqueue(FUNC)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_count_after_fork, args=(queue, out))
    child.start()
    assert await asyncio.to_thread(out.get, True, 30) == 1
    await asyncio.to_thread(child.join, 30)
    assert child.exitcode == 0
    assert await queue.count() == 1  # the parent's connection is untouched


def test_busy_is_retried_then_reported() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = 5  # SQLITE_BUSY
            raise exc
        return "ok"

    assert connection._retry(flaky) == "ok" and len(calls) == 3

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        connection._retry(broken)


async def test_driver_errors_become_storage_errors(tmp_path: Path) -> None:
    q = AsyncSQLiteTaskQueue(db_path=tmp_path)  # a directory, not a file
    with pytest.raises(StorageError) as info:
        await q.count()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    await q.close()


@pytest.mark.parametrize(
    "kwargs", [{"db_path": ":memory:"}, {"base_dir": "s3://bucket/x"}, {"db_path": 42}], ids=str
)
def test_bad_locations_fail_at_construction(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=r"db_path|base_dir"):
        AsyncSQLiteTaskQueue(**kwargs)


def test_base_dir_and_config(tmp_path: Path) -> None:
    q = AsyncSQLiteTaskQueue(base_dir=tmp_path / "data")
    assert q.db_path == str(tmp_path / "data" / "omniq.db")
    config = SQLiteTaskQueueConfig(
        project_name="cfg", db_path=str(tmp_path / "x.db"), queues=["a", "b"]
    )
    q = AsyncSQLiteTaskQueue.from_config(config)
    assert (q.project_name, q.queues, q.db_path) == ("cfg", ["a", "b"], str(tmp_path / "x.db"))
    r = AsyncSQLiteResultStorage.from_config(SQLiteResultStorageConfig(base_dir=str(tmp_path)))
    e = AsyncSQLiteEventStorage.from_config(
        SQLiteEventStorageConfig(db_path=str(tmp_path / "e.db"))
    )
    assert (r.db_path, e.db_path) == (str(tmp_path / "omniq.db"), str(tmp_path / "e.db"))


# --- corrupt rows --------------------------------------------------------------------------------


async def test_corrupt_row_is_claimed_with_a_payload_that_fails(
    queue: AsyncSQLiteTaskQueue, db: str
) -> None:
    bad = await queue.enqueue(FUNC, priority=1)
    good = await queue.enqueue(FUNC)
    with _raw(db) as conn:
        conn.execute(
            "UPDATE omniq_tasks SET error = '{not json', depends_on = 'x' WHERE id = ?", (bad,)
        )
    listed = await queue.list_tasks()
    assert [t.id for t in listed] == [bad, good] and listed[0].error.type == "CorruptTask"
    claimed = await queue.claim("w", limit=5)
    assert [t.id for t in claimed] == [bad, good]
    corrupt = claimed[0]
    assert corrupt.payload == b"" and corrupt.status is TaskStatus.RUNNING and corrupt.attempts == 1
    with pytest.raises(SerializationError):
        queue.serializer.decode_call(corrupt.payload)
    failed = corrupt.evolve(
        status=TaskStatus.FAILED, error=TaskError(type="SerializationError", message="x")
    )
    assert await queue.finish("w", [failed]) == {bad}  # the worker can still record the failure
    assert (await queue.get_task(bad)).status is TaskStatus.FAILED


async def test_row_with_unknown_status_does_not_break_listing(
    queue: AsyncSQLiteTaskQueue, db: str
) -> None:
    task_id = await queue.enqueue(FUNC)
    with _raw(db) as conn:
        conn.execute(
            "UPDATE omniq_tasks SET status = 'zombie', run_at = 'soon' WHERE id = ?", (task_id,)
        )
    (task,) = await queue.list_tasks()
    assert task.id == task_id and task.payload == b"" and "corrupt" in task.error.message
    assert await queue.claim("w") == []


# --- results -------------------------------------------------------------------------------------


async def test_results_put_replace_delete_expire(db: str) -> None:
    past, future = utcnow() - timedelta(seconds=1), utcnow() + timedelta(hours=1)
    async with AsyncSQLiteResultStorage(db_path=db) as results:
        first = TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value={"n": [1, 2]}, attempts=1)
        await results.put_many([
            first,
            TaskResult(task_id="t2", status=TaskStatus.FAILED, expires_at=future),
            TaskResult(task_id="old", status=TaskStatus.SUCCESS, expires_at=past),
        ])  # fmt: skip
        assert await results.get("t1") == first
        await results.put(TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value=2))
        assert (await results.get("t1")).value == 2
        assert await results.delete("t1") is True and await results.delete("t1") is False
        assert await results.get("old") is None  # expired: hidden, then cleaned up
        assert await results.cleanup_expired() == 1 and await results.cleanup_expired() == 0
        assert (await results.get("t2")).status is TaskStatus.FAILED


async def test_result_wait_is_woken_by_another_object(db: str) -> None:
    waiter, writer = AsyncSQLiteResultStorage(db_path=db), AsyncSQLiteResultStorage(db_path=db)
    try:
        signal = waiter._result_signal("t")
        assert signal is not None
        await writer.put(TaskResult(task_id="t", status=TaskStatus.SUCCESS, value=5))
        await asyncio.wait_for(signal, 5)  # resolved by the write itself, not by a poll
        assert (await waiter.get("t", wait=True, timeout=5)).value == 5
        waiting = asyncio.create_task(waiter.get("u", wait=True, timeout=30))
        await writer.put(TaskResult(task_id="u", status=TaskStatus.SUCCESS, value=6))
        assert (await asyncio.wait_for(waiting, 10)).value == 6
        with pytest.raises(TimeoutError):
            await waiter.get("never", wait=True, timeout=0.05)
    finally:
        await waiter.close()
        await writer.close()


# --- events --------------------------------------------------------------------------------------


async def test_events_are_plain_columns_filtered_and_ordered(db: str) -> None:
    t0 = utcnow()
    t2, t3 = t0 + timedelta(seconds=2), t0 + timedelta(seconds=3)
    error = TaskError(type="ValueError", message="no", traceback=None)
    events = [
        TaskEvent(task_id="a", type=EventType.EXECUTING, timestamp=t2, attempt=1),
        TaskEvent(task_id="a", type=EventType.ENQUEUED, timestamp=t0, queue_name="q"),
        TaskEvent(task_id="b", type=EventType.ERROR, timestamp=t2, error=error, worker_id="w",
                  duration=0.25, schedule_id="s"),
        TaskEvent(task_id="a", type=EventType.COMPLETE, timestamp=t3),
    ]  # fmt: skip
    async with AsyncSQLiteEventStorage(db_path=db) as store:
        await store.log_many(events[:3])
        await store.log(events[3])
        everything = await store.get_events()
        assert everything == [events[1], events[0], events[2], events[3]]  # ties keep write order
        assert await store.get_events(task_id="a", event_type="executing") == [events[0]]
        assert await store.get_events(event_type=EventType.ERROR) == [events[2]]
        window = await store.get_events(since=t0 + timedelta(seconds=1), until=t2)
        assert window == [events[0], events[2]]
        assert await store.get_events(limit=2) == everything[:2]
        with pytest.raises(ConfigError, match="event_type"):
            await store.get_events(event_type="nope")
        assert await store.delete_before(t2) == 1
        assert len(await store.get_events()) == 3
    with _raw(db) as conn:
        row = conn.execute("SELECT error FROM omniq_events WHERE task_id = 'b'").fetchone()
    assert json.loads(row["error"]) == {"type": "ValueError", "message": "no", "traceback": None}


# --- sync twins ----------------------------------------------------------------------------------


def test_sync_twins(db: str) -> None:
    with (
        SQLiteTaskQueue(db_path=db) as q,
        SQLiteResultStorage(db_path=db) as r,
        SQLiteEventStorage(db_path=db) as e,
    ):
        task_id = q.enqueue(FUNC, key="once")
        assert q.enqueue(FUNC, key="once") == task_id
        (task,) = q.claim("w")
        assert q.finish("w", [task.evolve(status=TaskStatus.SUCCESS)]) == {task_id}
        r.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value="done"))
        assert r.get(task_id, wait=True, timeout=5).unwrap() == "done"
        e.log(TaskEvent(task_id=task_id, type=EventType.COMPLETE, timestamp=utcnow()))
        assert [ev.type for ev in e.get_events(task_id=task_id)] == [EventType.COMPLETE]
    twin = SQLiteTaskQueue.from_config(SQLiteTaskQueueConfig(db_path=db))
    assert isinstance(twin, SQLiteTaskQueue) and twin.count() == 1
    twin.close()


# --- file permissions ------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(
    ("settings", "file_mode", "dir_mode"),
    [
        pytest.param(Settings(), 0o600, 0o700, id="private"),
        pytest.param(Settings(FILE_MODE=0o660, DIR_MODE=0o770), 0o640, 0o750, id="relaxed"),
    ],
)
async def test_database_and_its_directories_are_private(
    tmp_path: Path, settings: Settings, file_mode: int, dir_mode: int
) -> None:
    """Given umask 022, the database, its -wal and -shm files and the directories made for
    them are the owner's only (a setting may relax that; the umask still applies)."""
    root = tmp_path / "new"
    queue = AsyncSQLiteTaskQueue(base_dir=root / "data", settings=settings)
    results = AsyncSQLiteResultStorage(base_dir=root / "data", settings=settings)
    try:
        task_id = await queue.enqueue(FUNC)
        await results.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=1))
        modes = modes_under(root)
    finally:
        await queue.close()
        await results.close()
    assert modes == {
        ".": dir_mode,
        "data": dir_mode,
        "data/omniq.db": file_mode,
        "data/omniq.db-wal": file_mode,
        "data/omniq.db-shm": file_mode,
    }


async def test_a_directory_others_can_write_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for _ in range(2):
        queue = AsyncSQLiteTaskQueue(base_dir=shared)
        try:
            await queue.count()
        finally:
            await queue.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{shared} is writable by others" in warnings[0]
