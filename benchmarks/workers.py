"""Worker-type benchmarks on SQLite (issue: process-pool and gevent workers).

    .venv/bin/python benchmarks/workers.py [--repeat 3]

- I/O-bound: 10,000 tasks that each sleep 10 ms, AsyncWorker with 100 slots (ceiling 10,000/s).
- CPU-bound: 2,000 tasks of ~5 ms pure-Python work, ProcessPoolWorker(2) vs ThreadPoolWorker with
  2 threads and with its default count (more threads claim in larger batches: the faster one is
  the baseline).
- Blocking I/O: 10,000 tasks that each call ``time.sleep(0.01)``, GeventWorker with 100 greenlets
  (ceiling 10,000/s). Each run is a child process that monkey-patches itself first, as
  ``omniq worker --worker-type gevent`` does: unpatched, ``time.sleep`` would block the hub.
Medians of ``--repeat`` runs, fresh database each run; ``--only gevent`` / ``--only cpu`` runs
just that case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_tasks

from omniq.queue import AsyncSQLiteTaskQueue
from omniq.storage import AsyncSQLiteResultStorage
from omniq.workers import (
    AsyncGeventWorker,
    AsyncProcessPoolWorker,
    AsyncThreadPoolWorker,
    AsyncWorker,
)


async def drain(
    worker_class: type, func: object, n: int, slots: int | None, args: tuple[object, ...] = ()
) -> float:
    """Tasks/s draining ``n`` calls (results stored); ``slots`` None: the worker's default."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "omniq.db")
        queue, results = AsyncSQLiteTaskQueue(db_path=db), AsyncSQLiteResultStorage(db_path=db)
        await queue.enqueue_many([{"func": func, "args": args}] * n)
        worker = worker_class(queue=queue, result_store=results, max_workers=slots)
        await worker.start()  # process children start here, outside the timing
        started = time.perf_counter()
        while worker.processed < n:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        await worker.stop()
        await queue.close()
        await results.close()
        return n / elapsed


def gevent_run() -> float:
    """One GeventWorker drain in a fresh, monkey-patched child process; its tasks/s."""
    done = subprocess.run(
        [sys.executable, __file__, "--gevent-child"], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def gevent_child() -> None:
    from omniq.workers.gevent_pool import patch

    patch()  # before any thread, loop or connection exists (importing omniq creates none)
    # By import path, so the worker resolves the patched time.sleep.
    print(asyncio.run(drain(AsyncGeventWorker, "time:sleep", 10_000, 100, args=(0.01,))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["gevent", "cpu"], help="run only this case")
    parser.add_argument("--gevent-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gevent_child:
        gevent_child()
        return

    def median(make: object) -> tuple[float, list[float]]:
        runs = [asyncio.run(make()) for _ in range(args.repeat)]  # type: ignore[operator]
        return statistics.median(runs), runs

    if args.only == "cpu":
        print("| scenario | median | runs | bar |")
        print("| --- | --- | --- | --- |")
        print(*cpu_rows(args.repeat), sep="\n")
        return
    gevent_runs = [gevent_run() for _ in range(args.repeat)]
    gevent_row = (
        f"| GeventWorker(100), 10,000 x 10 ms time.sleep (patched) | "
        f"{statistics.median(gevent_runs):,.0f} tasks/s | "
        f"{', '.join(f'{r:,.0f}' for r in gevent_runs)} | >= 4,000 |"
    )
    if args.only == "gevent":
        print("| scenario | median | runs | bar |")
        print("| --- | --- | --- | --- |")
        print(gevent_row)
        return
    io_rate, io_runs = median(lambda: drain(AsyncWorker, bench_tasks.async_sleep_10ms, 10_000, 100))
    print("| scenario | median | runs | bar |")
    print("| --- | --- | --- | --- |")
    print(
        f"| AsyncWorker(100), 10,000 x 10 ms sleep | {io_rate:,.0f} tasks/s | "
        f"{', '.join(f'{r:,.0f}' for r in io_runs)} | >= 4,000 |"
    )
    print(gevent_row)
    print(*cpu_rows(args.repeat), sep="\n")


def cpu_rows(repeat: int) -> list[str]:
    """ProcessPoolWorker(2) against ThreadPoolWorker with 2 threads and with its default count,
    runs interleaved so that a change in the machine's load hits all three alike; the ratio is
    taken against the faster thread pool."""
    cases = {
        "ProcessPoolWorker(2)": (AsyncProcessPoolWorker, 2),
        "ThreadPoolWorker(2)": (AsyncThreadPoolWorker, 2),
        "ThreadPoolWorker() (default threads)": (AsyncThreadPoolWorker, None),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (worker_class, slots) in cases.items():
            runs[name].append(asyncio.run(drain(worker_class, bench_tasks.cpu_5ms, 2_000, slots)))
    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    rows = [
        f"| {name}, 2,000 x ~5 ms CPU | {medians[name]:,.0f} tasks/s | "
        f"{', '.join(f'{r:,.0f}' for r in runs[name])} | |"
        for name in cases
    ]
    process, *threads = medians.values()
    return [*rows, f"| process / faster thread pool | {process / max(threads):.2f}x | | >= 1.7x |"]


if __name__ == "__main__":
    main()
