"""AsyncWorker against ThreadPoolWorker on SQLite, Redis and PostgreSQL (issue 16, item 3).

    .venv/bin/python benchmarks/worker_kinds.py [--repeat 3] [--tasks 10000] [--only redis]

Per backend, this process enqueues ``--tasks`` no-op tasks (the producer); a worker process with
8 slots drains them with results stored and reports tasks/s from its start to its last
outcome. The cases run interleaved, round after round, so that a change in the machine's load
hits all of them alike:

- ``AsyncWorker(8)``, async no-op tasks (they run on the worker's event loop);
- ``ThreadPoolWorker(8)``, sync no-op tasks (the sync twin, as the other benchmarks run it);
- ``AsyncWorker(8)``, sync no-op tasks (they run in its threads).

Starts its own redis-server and PostgreSQL server (stock durability: fsync and
synchronous_commit on) and prints one Markdown row per case with its median, its runs and,
for AsyncWorker, the median of its per-round ratios to ThreadPoolWorker (the bar: at least
0.9). ``--dsn`` uses an existing PostgreSQL server instead of starting one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Keep this directory off the front of sys.path (redis_backend.py is named like the driver).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path += [str(HERE), str(HERE.parent / "tests")]

import bench_tasks  # noqa: E402
from bench_timing import drain_rate, thread_drain_rate  # noqa: E402

from omniq import ResultStore, TaskQueue  # noqa: E402
from omniq.queue import AsyncTaskQueue  # noqa: E402
from omniq.storage import AsyncResultStorage  # noqa: E402
from omniq.workers import AsyncWorker, ThreadPoolWorker  # noqa: E402

SLOTS = 8
#: case name -> (worker kind, task function)
CASES = {
    "AsyncWorker(8), async no-op": ("async", "async_noop"),
    "ThreadPoolWorker(8), sync no-op": ("thread", "noop"),
    "AsyncWorker(8), sync no-op": ("async", "noop"),
}
BASELINE = "ThreadPoolWorker(8), sync no-op"


# --- the worker process ----------------------------------------------------------------------


def worker_run(url: str, project: str, kind: str, n: int) -> float:
    """Drain ``n`` tasks of ``project`` with a worker of ``kind``: tasks/s."""
    if kind == "thread":
        queue = TaskQueue.from_url(url, project_name=project)
        results = ResultStore.from_url(url, project_name=project)
        rate = thread_drain_rate(
            ThreadPoolWorker(queue=queue, result_store=results, max_workers=SLOTS), n
        )
        queue.close()
        results.close()
        return rate

    async def run() -> float:
        queue = AsyncTaskQueue.from_url(url, project_name=project)
        results = AsyncResultStorage.from_url(url, project_name=project)
        rate = await drain_rate(
            AsyncWorker(queue=queue, result_store=results, max_workers=SLOTS), n
        )
        await queue.close()
        await results.close()
        return rate

    return asyncio.run(run())


# --- the producer ----------------------------------------------------------------------------


def one_run(url: str, kind: str, func: str, n: int) -> float:
    """Enqueue ``n`` tasks in a fresh project, drain them in a worker process: its tasks/s."""
    project = f"k{uuid.uuid4().hex[:10]}"
    queue = TaskQueue.from_url(url, project_name=project)
    queue.enqueue_many([{"func": getattr(bench_tasks, func)}] * n)
    child = [sys.executable, __file__, "--worker", url, project, kind, str(n)]
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    if queue.count(status="success") != n:
        statuses = ("pending", "running", "retrying", "success", "failed")
        counts = {status: queue.count(status=status) for status in statuses}
        raise RuntimeError(f"{kind} worker on {url}: {counts}\n{done.stderr[-2000:]}")
    queue.purge()
    queue.close()
    return float(done.stdout.split()[-1])


@contextmanager
def sqlite_url() -> Iterator[Callable[[], str]]:
    with tempfile.TemporaryDirectory() as tmp:
        yield lambda: f"sqlite:///{os.path.join(tmp, uuid.uuid4().hex)}.db"


@contextmanager
def redis_url() -> Iterator[Callable[[], str]]:
    from redis_backend import start_server

    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(tmp, appendonly=False)
        try:
            yield lambda: url
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def postgres_url(dsn: str | None = None) -> Iterator[Callable[[], str]]:
    if dsn is not None:
        yield lambda: dsn
        return
    from servers.postgres import PostgresServer

    server = PostgresServer(durable=True)
    server.start()
    try:
        yield lambda: server.dsn
    finally:
        server.destroy()


BACKENDS = {"sqlite": sqlite_url, "redis": redis_url, "postgres": postgres_url}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--only", choices=sorted(BACKENDS), help="one backend only")
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, project, kind, n = args.worker
        print(worker_run(url, project, kind, int(n)))
        return
    print("| backend | case | median tasks/s | runs | vs ThreadPoolWorker |")
    print("| --- | --- | --- | --- | --- |")
    for name, location in BACKENDS.items():
        if args.only and name != args.only:
            continue
        runs: dict[str, list[float]] = {case: [] for case in CASES}
        with location(args.dsn) if name == "postgres" else location() as url:
            for _ in range(args.repeat):
                for case, (kind, func) in CASES.items():
                    runs[case].append(one_run(url(), kind, func, args.tasks))
        for case, rates in runs.items():
            median = statistics.median(rates)
            # Each round's runs follow one another: the median of per-round ratios is steadier
            # than a ratio of medians when the machine's load changes between rounds.
            ratios = [r / base for r, base in zip(rates, runs[BASELINE], strict=True)]
            ratio = "" if case == BASELINE else f"{statistics.median(ratios):.2f}x"
            shown = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"| {name} | {case} | {median:,.0f} | {shown} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
