"""Benchmarks of the embedded backends (issue: core performance bars).

    .venv/bin/python benchmarks/embedded.py [--repeat 3] [--tasks 10000]

Prints the median of ``--repeat`` runs for each scenario as a Markdown table. Every run uses a
fresh database in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_tasks
from bench_timing import drain_rate, print_table, thread_drain_rate

from omniq.queue import AsyncMemoryTaskQueue, AsyncSQLiteTaskQueue, SQLiteTaskQueue
from omniq.storage import AsyncMemoryResultStorage, SQLiteResultStorage
from omniq.workers import AsyncWorker, ThreadPoolWorker


def sqlite_thread_drain(n: int) -> float:
    """SQLite queue + SQLite results, one ThreadPoolWorker (8 threads): tasks/s end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "omniq.db")
        with SQLiteTaskQueue(db_path=db) as queue, SQLiteResultStorage(db_path=db) as results:
            queue.enqueue_many([{"func": bench_tasks.noop}] * n)
            worker = ThreadPoolWorker(queue=queue, result_store=results, max_workers=8)
            rate = thread_drain_rate(worker, n)
            assert queue.count(status="success") == n
            return rate


def sqlite_enqueue_many(n: int) -> float:
    """``enqueue_many`` of n tasks into SQLite: tasks/s."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        SQLiteTaskQueue(db_path=os.path.join(tmp, "omniq.db")) as queue,
    ):
        queue.count()  # open the database outside the timing
        calls = [{"func": bench_tasks.noop}] * n
        started = time.perf_counter()
        queue.enqueue_many(calls)
        return n / (time.perf_counter() - started)


def memory_async_drain(n: int) -> float:
    """Memory backend, AsyncWorker (100 slots), async no-op tasks: tasks/s."""

    async def run() -> float:
        queue, results = AsyncMemoryTaskQueue(), AsyncMemoryResultStorage()
        await queue.enqueue_many([{"func": bench_tasks.async_noop}] * n)
        worker = AsyncWorker(queue=queue, result_store=results, max_workers=100)
        return await drain_rate(worker, n)

    return asyncio.run(run())


def sqlite_round_trip_ms(samples: int = 300) -> float:
    """Enqueue -> result with an idle ThreadPoolWorker on SQLite: p50 in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "omniq.db")
        with SQLiteTaskQueue(db_path=db) as queue, SQLiteResultStorage(db_path=db) as results:
            worker = ThreadPoolWorker(queue=queue, result_store=results, max_workers=8)
            worker.start()
            latencies = []
            for _ in range(samples):
                time.sleep(0.002)  # let the worker go idle between samples
                started = time.perf_counter()
                task_id = queue.enqueue(bench_tasks.noop)
                results.get(task_id, wait=True, timeout=10)
                latencies.append(time.perf_counter() - started)
            worker.stop()
    return statistics.median(latencies) * 1000


def worker_rss_growth(n: int = 100_000) -> float:
    """Peak RSS growth (MiB) of an AsyncWorker on SQLite between 20% and 100% of n tasks."""

    async def run() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            db = os.path.join(tmp, "omniq.db")
            queue = AsyncSQLiteTaskQueue(db_path=db)
            from omniq.storage import AsyncSQLiteResultStorage

            results = AsyncSQLiteResultStorage(db_path=db)
            await queue.enqueue_many([{"func": bench_tasks.async_noop}] * n)
            worker = AsyncWorker(queue=queue, result_store=results, max_workers=50)
            await worker.start()
            mark = None
            while worker.processed < n:
                await asyncio.sleep(0.01)
                if mark is None and worker.processed >= n // 5:
                    gc.collect()
                    mark = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            await worker.stop()
            await queue.close()
            await results.close()
            end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return (end - (mark or end)) / 1024

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rss-tasks", type=int, default=100_000)
    args = parser.parse_args()
    n = args.tasks
    scenarios = [
        (
            f"SQLite queue+results, ThreadPoolWorker(8), drain {n} no-op tasks",
            "tasks/s",
            ">= 8,000",
            lambda: sqlite_thread_drain(n),
        ),
        (f"SQLite enqueue_many({n})", "tasks/s", ">= 50,000", lambda: sqlite_enqueue_many(n)),
        (
            f"Memory, AsyncWorker(100), drain {n} async no-op tasks",
            "tasks/s",
            ">= 20,000",
            lambda: memory_async_drain(n),
        ),
        (
            "SQLite enqueue -> result round trip, idle worker (p50 of 300)",
            "ms",
            "< 5",
            sqlite_round_trip_ms,
        ),
    ]
    print_table(scenarios, args.repeat)
    growth = worker_rss_growth(args.rss_tasks)
    print(
        f"| AsyncWorker on SQLite, {args.rss_tasks:,} tasks: peak RSS growth after the first 20% "
        f"| {growth:.1f} MiB | 1 | flat |"
    )


if __name__ == "__main__":
    main()
