"""PostgreSQL-specific behaviour: schema and migrations, LISTEN/NOTIFY wake-ups, lost
connections and a server restart under load, plans, many worker processes. The shared contract
is in tests/conformance/."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import taskfns
from conftest import TESTS_DIR, wait_until
from servers.postgres import PostgresServer, postgres_server_fixture  # noqa: F401 (fixture)

from omniq.backends.postgres._twins import PostgresResultStorage, PostgresTaskQueue
from omniq.backends.postgres.connection import SERVER_SETTINGS
from omniq.backends.postgres.queue import (
    AsyncPostgresTaskQueue,
    PostgresTaskQueueConfig,
    _claim_sql,
)
from omniq.backends.postgres.sql import MIGRATIONS, QUERIES, SCHEMA, SCHEMA_VERSION
from omniq.backends.postgres.storage import (
    AsyncPostgresEventStorage,
    AsyncPostgresResultStorage,
    PostgresResultStorageConfig,
)
from omniq.errors import ConfigError, StorageError
from omniq.models import EventType, TaskError, TaskEvent, TaskResult, TaskStatus, utcnow


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn


@pytest.fixture
def fresh_dsn(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    name = f"t{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f'CREATE DATABASE "{name}"')
    return postgres_server.dsn_for(name)


@pytest.fixture
async def queue(dsn: str, project: str) -> AsyncIterator[AsyncPostgresTaskQueue]:
    q = AsyncPostgresTaskQueue(dsn=dsn, project_name=project)
    yield q
    await q.close()


async def _raw(dsn: str) -> Any:
    """A plain connection of our own, with OmniQ's session settings."""
    return await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)


# --- schema ------------------------------------------------------------------------------------


async def test_concurrent_starters_create_the_schema_once(fresh_dsn: str) -> None:
    # Different pool sizes: distinct pools, so every object migrates on its own connection.
    queues = [
        AsyncPostgresTaskQueue(dsn=fresh_dsn, project_name="p", pool_max_size=size)
        for size in range(2, 10)
    ]
    script = (
        "import asyncio, sys\n"
        "from omniq.backends.postgres.queue import AsyncPostgresTaskQueue\n"
        "async def main():\n"
        "    async with AsyncPostgresTaskQueue(dsn=sys.argv[1], project_name='p') as q:\n"
        "        await q.count()\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, fresh_dsn]) for _ in range(3)]
    try:
        await asyncio.gather(*(q.count() for q in queues))
    finally:
        for q in queues:
            await q.close()
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0, 0]
    conn = await _raw(fresh_dsn)
    try:
        version = await conn.fetchval("SELECT value FROM omniq_meta WHERE name = 'schema_version'")
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'omniq_%'")
    finally:
        await conn.close()
    assert version == str(SCHEMA_VERSION)
    assert sorted(t["tablename"] for t in tables) == [
        "omniq_events",
        "omniq_meta",
        "omniq_records",
        "omniq_results",
        "omniq_tasks",
    ]


async def test_concurrent_starters_upgrade_a_version_1_database(fresh_dsn: str) -> None:
    # A database as the first release left it (migration 1 only), holding a task.
    conn = await _raw(fresh_dsn)
    try:
        await conn.execute(SCHEMA["meta_table"])
        await conn.execute(MIGRATIONS[1])
        await conn.execute(SCHEMA["set_schema_version"], "1")
        await conn.execute(
            "INSERT INTO omniq_tasks (project, id, queue_name, priority, status, max_retries,"
            " run_at, func_name, retry_delay, created_at, payload)"
            " VALUES ('p', 'old', 'default', 0, 'pending', 0, now(), 'f', 0, now(), '')"
        )
    finally:
        await conn.close()
    # Distinct pools: each migrates on its own connection, all at once; each then races to
    # create the same record.
    queues = [
        AsyncPostgresTaskQueue(dsn=fresh_dsn, project_name="p", pool_max_size=size)
        for size in range(2, 8)
    ]
    try:
        won = await asyncio.gather(*(q.swap_record("schedule", "s", b"x", 0) for q in queues))
        assert sorted(won, key=str) == [1] + [None] * (len(queues) - 1)
        assert await queues[0].count() == 1
        assert (await queues[0].get_task("old")).func_name == "f"
    finally:
        for q in queues:
            await q.close()
    conn = await _raw(fresh_dsn)
    try:
        version = await conn.fetchval("SELECT value FROM omniq_meta WHERE name = 'schema_version'")
    finally:
        await conn.close()
    assert version == str(SCHEMA_VERSION) == "3"


async def test_a_newer_schema_is_refused(fresh_dsn: str) -> None:
    async with AsyncPostgresTaskQueue(dsn=fresh_dsn) as q:
        await q.count()
    conn = await _raw(fresh_dsn)
    try:
        await conn.execute("UPDATE omniq_meta SET value = '999' WHERE name = 'schema_version'")
    finally:
        await conn.close()
    async with AsyncPostgresTaskQueue(dsn=fresh_dsn) as q:
        with pytest.raises(StorageError, match="version 999, newer than this OmniQ's"):
            await q.count()


# --- configuration and connections -------------------------------------------------------------


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="dsn"):
        AsyncPostgresTaskQueue(dsn="mysql://x")
    with pytest.raises(ConfigError, match="port"):
        AsyncPostgresTaskQueue(port=0)
    with pytest.raises(ConfigError, match="pool_max_size"):
        AsyncPostgresResultStorage(pool_min_size=5, pool_max_size=2)


async def test_an_unreachable_server_is_a_storage_error() -> None:
    from servers import free_port

    port = free_port()
    async with AsyncPostgresTaskQueue(host="127.0.0.1", port=port, username="x") as q:
        with pytest.raises(StorageError, match=f"PostgreSQL at 127.0.0.1:{port}"):
            await q.count()


def test_sync_twins_keyword_connection_and_configs(
    postgres_server: PostgresServer, project: str
) -> None:
    parts = {"host": "127.0.0.1", "port": postgres_server.port, "username": "omniq"}
    with PostgresTaskQueue(database="postgres", project_name=project, **parts) as q:
        task_id = q.enqueue(taskfns.add, {"a": 1, "b": 2})
        assert q.count(status="pending") == 1
        (task,) = q.claim("w")
        assert task.id == task_id and q.count(status="running") == 1
        assert q.finish("w", [task.evolve(status=TaskStatus.SUCCESS)]) == {task_id}
    config = PostgresTaskQueueConfig(dsn=postgres_server.dsn, project_name=project)
    with PostgresTaskQueue.from_config(config) as q:
        assert q.count(status="success") == 1
    result_config = PostgresResultStorageConfig(dsn=postgres_server.dsn, project_name=project)
    with PostgresResultStorage.from_config(result_config) as results:
        results.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=3))
        assert results.get(task_id).value == 3


def test_an_object_follows_the_loop_it_is_used_from(dsn: str, project: str) -> None:
    q = AsyncPostgresTaskQueue(dsn=dsn, project_name=project)
    asyncio.run(q.enqueue(taskfns.noop))
    assert asyncio.run(q.count()) == 1  # a new loop: a new pool, the old one dropped
    asyncio.run(q.close())


async def test_the_pool_replaces_connections_the_server_closed(
    queue: AsyncPostgresTaskQueue, dsn: str
) -> None:
    await queue.enqueue(taskfns.noop)
    conn = await _raw(dsn)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'omniq' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert killed >= 1
    assert await queue.count() == 1  # a read: retried once on a fresh connection


# --- wake-ups ----------------------------------------------------------------------------------


async def test_an_idle_worker_wakes_at_once_on_enqueue(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str
) -> None:
    async with AsyncPostgresTaskQueue(dsn=dsn, project_name=project) as producer:
        await queue.wait_for_tasks(0.01)  # connect the listener
        waiter = asyncio.ensure_future(queue.wait_for_tasks(30))
        await wait_until(lambda: bool(queue._listener._waiters))
        started = time.perf_counter()
        await producer.enqueue(taskfns.noop)
        await asyncio.wait_for(waiter, 5)
        assert time.perf_counter() - started < 1.0


async def test_a_waiter_wakes_only_for_its_queues_and_for_due_tasks(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str
) -> None:
    async with AsyncPostgresTaskQueue(dsn=dsn, project_name=project) as producer:
        waiter = asyncio.ensure_future(queue.wait_for_tasks(30, ["high"]))
        await wait_until(lambda: bool(queue._listener._waiters))
        await producer.enqueue(taskfns.noop, queue_name="low")
        done, _ = await asyncio.wait({waiter}, timeout=0.3)  # "low" must not wake it
        assert not done
        await producer.enqueue(taskfns.noop, queue_name="high", run_in=0.5)
        started = time.perf_counter()
        await asyncio.wait_for(waiter, 5)  # woken, looks, sleeps until the task is due
        assert time.perf_counter() - started < 1.0
        started = time.perf_counter()
        await queue.wait_for_tasks(30, ["high"])
        assert 0.2 < time.perf_counter() - started < 2.0


async def test_get_wait_returns_on_the_notification_without_polling(dsn: str, project: str) -> None:
    waiting = AsyncPostgresResultStorage(dsn=dsn, project_name=project)
    writer = AsyncPostgresResultStorage(dsn=dsn, project_name=project)
    reads = 0
    original = waiting._get

    async def counted(task_id: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return await original(task_id)

    waiting._get = counted  # type: ignore[method-assign]
    try:
        getter = asyncio.ensure_future(waiting.get("t1", wait=True, timeout=30))
        await wait_until(lambda: "t1" in waiting._listener._waiters)
        await asyncio.sleep(0.5)  # the subject: nothing is read while nothing is written
        assert reads == 1
        started = time.perf_counter()
        await writer.put(TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value=42))
        result = await asyncio.wait_for(getter, 5)
        assert result.value == 42 and time.perf_counter() - started < 1.0
        assert reads == 2
    finally:
        await waiting.close()
        await writer.close()


async def test_a_killed_listener_wakes_its_waiters_and_reconnects(dsn: str, project: str) -> None:
    waiting = AsyncPostgresResultStorage(dsn=dsn, project_name=project)
    writer = AsyncPostgresResultStorage(dsn=dsn, project_name=project)
    try:
        future = await waiting._listener.subscribe(["x"])
        pid = waiting._listener._conn.get_server_pid()
        conn = await _raw(dsn)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        await asyncio.wait_for(future, 5)  # woken to look again
        getter = asyncio.ensure_future(waiting.get("t2", wait=True, timeout=30))
        await wait_until(lambda: "t2" in waiting._listener._waiters)
        assert waiting._listener._conn.get_server_pid() != pid
        await writer.put(TaskResult(task_id="t2", status=TaskStatus.SUCCESS, value=1))
        assert (await asyncio.wait_for(getter, 5)).value == 1
    finally:
        await waiting.close()
        await writer.close()


# --- storage details ---------------------------------------------------------------------------


async def test_events_are_plain_indexed_columns(dsn: str, project: str) -> None:
    async with AsyncPostgresEventStorage(dsn=dsn, project_name=project) as events:
        now = utcnow()
        error = TaskError(type="ValueError", message="boom")
        await events.log_many(
            [
                TaskEvent(task_id="a", type=EventType.EXECUTING, timestamp=now, attempt=1),
                TaskEvent(
                    task_id="a",
                    type=EventType.ERROR,
                    timestamp=now + timedelta(seconds=1),
                    error=error,
                    duration=0.5,
                ),
            ]
        )
        found = await events.get_events(event_type="error")
        assert [(e.task_id, e.error, e.duration) for e in found] == [("a", error, 0.5)]
        assert len(await events.get_events(since=now + timedelta(seconds=0.5))) == 1
        await events.log_many(  # enough rows for the planner to tell the indexes apart
            [
                TaskEvent(task_id=f"t{i % 500}", type=kind, timestamp=now)
                for i in range(5000)
                for kind in (EventType.EXECUTING, EventType.COMPLETE)
            ]
        )
    conn = await _raw(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT type, error->>'message' AS message FROM omniq_events "
            "WHERE project = $1 AND task_id = 'a' AND type = 'error'",
            project,
        )
        await conn.execute("ANALYZE omniq_events")
        plans = {}
        for name, filters, value in (
            ("task", "AND task_id = $2", "a"),
            ("type", "AND type = $2", "error"),
            ("time", "AND timestamp >= $2", now),
        ):
            order = "timestamp, id" if name == "time" else f"{filters.split()[1]}, timestamp, id"
            query = QUERIES["query_events"].format(filters=filters, order=order, limit="$3")
            lines = await conn.fetch("EXPLAIN " + query, project, value, 10)
            plans[name] = "\n".join(line[0] for line in lines)
    finally:
        await conn.close()
    assert (row["type"], row["message"]) == ("error", "boom")
    for name, plan in plans.items():
        assert f"omniq_events_{name}" in plan and "Sort" not in plan, plan


async def test_claims_are_ordered_index_scans(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str
) -> None:
    calls = [
        {"func": taskfns.noop, "queue_name": name, "priority": i % 5}
        for i in range(3000)
        for name in ("high", "low")
    ]
    await queue.enqueue_many(calls)
    await queue.claim("w", limit=8)
    now, lease = utcnow(), utcnow() + timedelta(seconds=30)
    conn = await _raw(dsn)
    try:
        await conn.execute("ANALYZE omniq_tasks")
        plans = []
        for query, args in (
            (_claim_sql("claim_from_queues", 8), (project, ["high", "low"], now, "w", lease, 8)),
            (_claim_sql("claim_from_any", 8), (project, now, "w", lease, 8)),
        ):
            transaction = conn.transaction()
            await transaction.start()
            try:  # EXPLAIN ANALYZE claims for real: roll it back
                lines = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + query, *args)
            finally:
                await transaction.rollback()
            plans.append("\n".join(line[0] for line in lines))
    finally:
        await conn.close()
    by_queue, any_queue = plans
    assert "Index Scan using omniq_tasks_ready_by_queue" in by_queue, by_queue
    assert "Index Scan using omniq_tasks_ready on" in any_queue, any_queue
    for plan in plans:
        assert "Seq Scan" not in plan and "rows=8 loops=1" in plan, plan
        assert "Tid Scan" in plan, plan


async def test_mark_started_looks_up_each_row_by_key(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str
) -> None:
    """Counting the starts of tasks claimed ahead locks each row by its primary key and
    updates it by address, on a young table (no statistics) and a large analyzed one (the
    plans of omniq_mark_started's statements, as auto_explain reports them)."""
    conn = await _raw(dsn)
    plans: list[str] = []
    conn.add_log_listener(lambda _conn, message: plans.append(message.message))
    try:
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;"
            " SET client_min_messages = log"
        )
        for size in (8, 3000):
            await queue.enqueue_many([{"func": taskfns.noop} for _ in range(size)])
            if size > 8:
                await conn.execute("ANALYZE omniq_tasks")
            ahead = await queue.claim("w", limit=8, start=0)
            plans.clear()
            written = await conn.fetch(
                QUERIES["mark_started"],
                project,
                "w",
                sorted(t.id for t in ahead),
                [1] * len(ahead),
                [utcnow()] * len(ahead),
            )
            assert len(written) == 8
            # Their log messages are delivered to listeners after the reply: wait for both.
            await wait_until(lambda: _has_plans(plans), timeout=10)
            lock = [p for p in plans if "FOR UPDATE" in p and "LockRows" in p]
            update = [p for p in plans if "Update on omniq_tasks" in p]
            assert len(lock) == 1 and len(update) == 1, plans
            assert "Seq Scan" not in lock[0] and "omniq_tasks_pkey" in lock[0], lock[0]
            assert "rows=8 loops=1" in update[0], update[0]
            assert "Seq Scan" not in update[0] and "Tid Scan" in update[0], update[0]
    finally:
        await conn.close()


def _has_plans(plans: list[str]) -> bool:
    """Whether the plans of the claim's row lock and of its update were both logged."""
    return any("LockRows" in p for p in plans) and any("Update on omniq_tasks" in p for p in plans)


async def test_mark_started_lands_on_a_row_renewed_while_it_waited(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str
) -> None:
    """A start mark that waits for the row lock of a lease renewal (the worker's renew loop runs
    beside its flush loop) is written on the renewed row, and the task's outcome then lands.
    Before: the mark found the renewed row by its address but could not see it from its
    statement's snapshot, wrote nothing, the outcome was refused for its attempt count, and the
    task ran again once its lease lapsed (tasks run twice in the four-process test)."""
    await queue.enqueue(taskfns.noop)
    [task] = await queue.claim("w", limit=1, start=0, lease_timeout=30)
    assert task.attempts == 0 and task.started_at is None
    started = task.evolve(attempts=1, started_at=utcnow())
    renewal = await _raw(dsn)
    watcher = await _raw(dsn)
    try:
        transaction = renewal.transaction()
        await transaction.start()
        lease = utcnow() + timedelta(seconds=30)
        assert await renewal.fetch(QUERIES["renew"], project, "w", [task.id], lease)
        mark = asyncio.ensure_future(queue.mark_started("w", [started]))

        async def mark_waits_for_the_lock() -> bool:
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
                    renewal.get_server_pid(),
                )
            )

        await wait_until(mark_waits_for_the_lock, timeout=10)
        await transaction.commit()
        assert await asyncio.wait_for(mark, 10) == {task.id}
    finally:
        await renewal.close()
        await watcher.close()
    stored = await queue.get_task(task.id)
    assert stored is not None and stored.attempts == 1 and stored.started_at is not None
    done = started.evolve(status=TaskStatus.SUCCESS, finished_at=utcnow())
    assert await queue.finish("w", [done]) == {task.id}


async def test_requeue_refuses_to_revive_a_key_held_by_a_live_task(
    queue: AsyncPostgresTaskQueue,
) -> None:
    first = await queue.enqueue(taskfns.noop, key="k")
    assert await queue.cancel(first)
    second = await queue.enqueue(taskfns.noop, key="k")
    assert second != first
    with pytest.raises(StorageError, match="idempotency key"):
        await queue.requeue(first)


# --- many processes, and a server restart under load ------------------------------------------


def _spawn_worker(spec: dict[str, Any], lease_timeout: float, slots: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(TESTS_DIR / "run_worker.py"),
            json.dumps(spec),
            "async",
            str(lease_timeout),
            str(slots),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _spec(dsn: str, project: str) -> dict[str, Any]:
    args = {"dsn": dsn, "project_name": project}
    return {
        "queue": "omniq.backends.postgres.queue:AsyncPostgresTaskQueue",
        "results": "omniq.backends.postgres.storage:AsyncPostgresResultStorage",
        "events": None,
        "args": args,
        "event_args": args,
    }


def _stop_all(procs: list[subprocess.Popen]) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


@pytest.mark.slow
async def test_four_worker_processes_run_20000_tasks_each_once(
    queue: AsyncPostgresTaskQueue, dsn: str, project: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    procs = [_spawn_worker(_spec(dsn, project), 30.0, 8) for _ in range(4)]
    try:
        for start in range(0, 20_000, 5_000):
            await queue.enqueue_many(
                [
                    {"func": taskfns.record, "args": (str(log), i)}
                    for i in range(start, start + 5000)
                ]
            )

        async def all_done() -> bool:
            return await queue.count(status="success") == 20_000

        await wait_until(all_done, timeout=300, interval=0.2)
    finally:
        codes = _stop_all(procs)
    assert sorted(int(x) for x in log.read_text().split()) == list(range(20_000))
    assert codes == [0, 0, 0, 0]


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, free to be stopped and started."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.mark.slow
async def test_a_server_restart_under_load_loses_and_repeats_nothing(
    own_server: PostgresServer, project: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    n = 3000
    async with AsyncPostgresTaskQueue(dsn=own_server.dsn, project_name=project) as q:
        await q.enqueue_many([{"func": taskfns.record, "args": (str(log), i)} for i in range(n)])
    # One worker; its leases (10 s) outlast the restart, so no task can run twice.
    proc = _spawn_worker(_spec(own_server.dsn, project), 10.0, 8)
    try:
        await wait_until(lambda: log.exists() and len(log.read_text().split()) >= 300, 60)
        await asyncio.to_thread(own_server.stop, "fast")
        await asyncio.to_thread(own_server.start)
        async with AsyncPostgresTaskQueue(dsn=own_server.dsn, project_name=project) as q:

            async def all_done() -> bool:
                return await q.count(status="success") == n

            await wait_until(all_done, timeout=120, interval=0.2)
    finally:
        codes = _stop_all([proc])
    runs = sorted(int(x) for x in log.read_text().split())
    assert runs == list(range(n))  # every task ran, none twice
    assert codes == [0]
