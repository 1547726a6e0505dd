"""Benchmarks of the PostgreSQL backend (queue + results), against a real server.

    .venv/bin/python benchmarks/postgres_backend.py [--repeat 3] [--tasks 10000] [--dsn URL]
    .venv/bin/python benchmarks/postgres_backend.py --explain [--rows 1000000]

Starts its own server (initdb + pg_ctl in a temporary directory, durability settings left at
PostgreSQL's defaults: fsync and synchronous_commit on) unless ``--dsn`` names one. Every run
uses a fresh database. Prints the median of ``--repeat`` runs per scenario as a Markdown table.
``--explain`` loads ``--rows`` tasks and prints the plans of the hot statements instead.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path += [str(HERE), str(HERE.parent / "tests")]

import asyncpg  # noqa: E402
import bench_tasks  # noqa: E402
from bench_timing import (  # noqa: E402
    drain_rate,
    print_table,
    round_trip_p50_ms,
    thread_drain_rate,
)

from omniq.backends.postgres._twins import PostgresResultStorage, PostgresTaskQueue  # noqa: E402
from omniq.backends.postgres.connection import SERVER_SETTINGS  # noqa: E402
from omniq.backends.postgres.queue import (  # noqa: E402
    AsyncPostgresTaskQueue,
    _claim_sql,
)
from omniq.backends.postgres.sql import QUERIES  # noqa: E402
from omniq.backends.postgres.storage import AsyncPostgresResultStorage  # noqa: E402
from omniq.models import utcnow  # noqa: E402
from omniq.workers import AsyncWorker, ThreadPoolWorker  # noqa: E402

SLOTS = 8


class Databases:
    """Fresh databases on one server."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def fresh(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        base, _, _ = self.dsn.rpartition("/")
        return f"{base}/{name}"


# --- scenarios -------------------------------------------------------------------------------


def drain_async(dsn: str, n: int) -> float:
    """AsyncWorker (8 slots), async no-op tasks, results stored: tasks/s."""

    async def run() -> float:
        queue = AsyncPostgresTaskQueue(dsn=dsn)
        results = AsyncPostgresResultStorage(dsn=dsn)
        await queue.enqueue_many([{"func": bench_tasks.async_noop}] * n)
        worker = AsyncWorker(queue=queue, result_store=results, max_workers=SLOTS)
        rate = await drain_rate(worker, n)
        assert await queue.count(status="success") == n
        await queue.close()
        await results.close()
        return rate

    return asyncio.run(run())


def drain_threads(dsn: str, n: int) -> float:
    """ThreadPoolWorker (8 threads), sync no-op tasks, results stored: tasks/s."""
    with PostgresTaskQueue(dsn=dsn) as queue, PostgresResultStorage(dsn=dsn) as results:
        queue.enqueue_many([{"func": bench_tasks.noop}] * n)
        worker = ThreadPoolWorker(queue=queue, result_store=results, max_workers=SLOTS)
        rate = thread_drain_rate(worker, n)
        assert queue.count(status="success") == n
        return rate


def enqueue_many(dsn: str, n: int) -> float:
    """``enqueue_many`` of n tasks in one call: tasks/s."""

    async def run() -> float:
        async with AsyncPostgresTaskQueue(dsn=dsn) as queue:
            await queue.count()  # connect and create the schema outside the timing
            calls = [{"func": bench_tasks.noop}] * n
            started = time.perf_counter()
            await queue.enqueue_many(calls)
            return n / (time.perf_counter() - started)

    return asyncio.run(run())


def spawn_workers(dsn: str, count: int, kind: str = "async") -> list[subprocess.Popen[str]]:
    """Worker processes on ``dsn``; returns once each has connected and gone idle."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker-process", dsn, "--worker-kind", kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a worker process failed to start")
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)


def round_trip_ms(dsn: str, samples: int = 300) -> float:
    """Enqueue -> result with an idle AsyncWorker in another process: p50 in ms."""
    procs = spawn_workers(dsn, 1)
    try:

        async def run() -> float:
            async with (
                AsyncPostgresTaskQueue(dsn=dsn) as queue,
                AsyncPostgresResultStorage(dsn=dsn) as results,
            ):
                await results.get("warm-up")
                return await round_trip_p50_ms(queue, results, samples)

        return asyncio.run(run())
    finally:
        stop_workers(procs)


def scale(dsn: str, n: int, processes: int) -> float:
    """``processes`` worker processes (AsyncWorker, 8 slots each) drain n tasks: tasks/s.

    The tasks are enqueued due 1 s ahead, so that every worker starts when they come due (the
    idle workers wake then by themselves); the clock runs from then to the last success.
    """
    procs = spawn_workers(dsn, processes)
    try:

        async def run() -> float:
            async with AsyncPostgresTaskQueue(dsn=dsn) as queue:
                due = utcnow() + timedelta(seconds=1)
                await queue.enqueue_many([{"func": bench_tasks.async_noop, "run_at": due}] * n)
                while utcnow() < due:
                    await asyncio.sleep(0.001)
                started = time.perf_counter()
                while await queue.count(status="pending") + await queue.count(status="running") > 0:
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                assert await queue.count(status="success") == n
                return n / elapsed

        return asyncio.run(run())
    finally:
        stop_workers(procs)


def worker_process(dsn: str, kind: str) -> None:
    """The body of a worker process: run until SIGTERM."""

    async def run() -> None:
        queue = AsyncPostgresTaskQueue(dsn=dsn)
        results = AsyncPostgresResultStorage(dsn=dsn)
        worker = AsyncWorker(queue=queue, result_store=results, max_workers=SLOTS)
        await queue.count()
        await worker.start()
        await asyncio.sleep(0.2)  # its first claim found nothing: it waits
        print("ready", flush=True)
        await worker.run()
        await queue.close()
        await results.close()

    asyncio.run(run())


# --- plans -----------------------------------------------------------------------------------

_LOAD = """
INSERT INTO omniq_tasks (project, id, queue_name, priority, status, max_retries, run_at,
    func_name, retry_delay, created_at, payload)
SELECT CASE WHEN i % 10 = 0 THEN 'other' ELSE 'bench' END, lpad(to_hex(i), 32, '0'),
    (ARRAY['high', 'medium', 'low'])[1 + i % 3], i % 5,
    CASE WHEN i % 50 = 0 THEN 'success' WHEN i % 997 = 0 THEN 'running' ELSE 'pending' END, 3,
    CASE WHEN i % 7 = 0 THEN now() + interval '1 hour' ELSE now() - interval '1 minute' END,
    'bench_tasks:noop', 1.0, now(), '\\x0011223344556677'::bytea
FROM generate_series(1, $1::integer) AS i
"""


def explain(dsn: str, rows: int) -> None:
    """Print the plans of the hot statements over ``rows`` tasks (90% in project 'bench')."""

    async def run() -> None:
        async with AsyncPostgresTaskQueue(dsn=dsn) as queue:
            await queue.count()  # creates the schema
        conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
        try:
            await conn.execute(_LOAD, rows)
            await conn.execute(
                "UPDATE omniq_tasks SET lease_until = now() WHERE status = 'running'"
            )
            await conn.execute("VACUUM ANALYZE omniq_tasks")
            now, lease = utcnow(), utcnow() + timedelta(seconds=30)
            some = await conn.fetch(
                "SELECT id FROM omniq_tasks WHERE project = 'bench' AND status = 'running' LIMIT 8"
            )
            ids = [r["id"] for r in some]
            stamps = [now] * len(ids)
            nulls: list[Any] = [None] * len(ids)
            plans = {
                "claim_from_queues (8 of ['high', 'low'])": (
                    _claim_sql("claim_from_queues", 8),
                    ("bench", ["high", "low"], now, "w", lease, 8),
                ),
                "claim_from_any (8)": (
                    _claim_sql("claim_from_any", 8),
                    ("bench", now, "w", lease, 8),
                ),
                "finish (8)": (
                    QUERIES["finish"],
                    (
                        "bench",
                        "w",
                        ids,
                        [1] * len(ids),
                        ["success"] * len(ids),
                        [0] * len(ids),
                        stamps,
                        nulls,
                        nulls,
                        nulls,
                        stamps,
                        stamps,
                        nulls,
                        None,
                        None,
                    ),
                ),
                "renew (8)": (QUERIES["renew"], ("bench", "w", ids, lease)),
                "due_in_queues": (QUERIES["due_in_queues"], ("bench", ["high", "low"])),
                "count pending": (
                    QUERIES["count_tasks"].format(filters="AND status = 'pending'"),
                    ("bench",),
                ),
            }
            print(f"Plans over {rows:,} tasks (PostgreSQL {conn.get_server_version()}):\n")
            for title, (query, args) in plans.items():
                transaction = conn.transaction()
                await transaction.start()
                try:  # EXPLAIN ANALYZE runs the statement: roll its changes back
                    lines = await conn.fetch(
                        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, *args
                    )
                finally:
                    await transaction.rollback()
                print(f"### {title}\n```")
                print("\n".join(line[0] for line in lines))
                print("```\n")
        finally:
            await conn.close()

    asyncio.run(run())


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--dsn", help="an existing server (default: start one)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", help="run the scenarios whose title contains this")
    parser.add_argument("--worker-process", help=argparse.SUPPRESS)
    parser.add_argument("--worker-kind", default="async", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_process:
        worker_process(args.worker_process, args.worker_kind)
        return
    server = None
    if args.dsn is None:
        from servers.postgres import PostgresServer

        server = PostgresServer(durable=True)
        server.start()
        dsn = server.dsn
    else:
        dsn = args.dsn
    try:
        databases = Databases(dsn)
        if args.explain:
            explain(databases.fresh(), args.rows)
            return
        run_scenarios(databases, args)
    finally:
        if server is not None:
            server.destroy()


def run_scenarios(databases: Databases, args: argparse.Namespace) -> None:
    n = args.tasks
    scenarios: list[tuple[str, str, str, Callable[[str], float]]] = [
        (f"AsyncWorker(8), drain {n:,} async no-op tasks + results", "tasks/s", ">= 12,000",
         lambda dsn: drain_async(dsn, n)),
        (f"ThreadPoolWorker(8), drain {n:,} no-op tasks + results", "tasks/s", ">= 12,000",
         lambda dsn: drain_threads(dsn, n)),
        (f"enqueue_many({n:,})", "tasks/s", ">= 30,000", lambda dsn: enqueue_many(dsn, n)),
        ("enqueue -> result round trip, idle worker process (p50 of 300)", "ms", "< 3",
         round_trip_ms),
    ]  # fmt: skip
    for processes in (1, 2, 4):
        scenarios.append(
            (
                f"{processes} worker process(es) x AsyncWorker(8), drain {2 * n:,} tasks",
                "tasks/s",
                "scales",
                lambda dsn, p=processes: scale(dsn, 2 * n, p),
            )
        )
    # Each run gets a fresh database.
    fresh = [(t, u, b, lambda f=f: f(databases.fresh())) for t, u, b, f in scenarios]
    print_table(fresh, args.repeat, args.only)


if __name__ == "__main__":
    main()
