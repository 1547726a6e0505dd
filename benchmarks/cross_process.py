"""What users meet: producer, worker and waiting client in separate processes.

    .venv/bin/python benchmarks/cross_process.py --backend sqlite [--repeat 3] [--tasks 10000]
        [--samples 300] [--worker thread|async] [--idle-window 10] [--processes 2]

``--backend`` is one of sqlite, postgres, redis, nats; the server backends start their own
server on loopback (PostgreSQL with stock durability: fsync and synchronous_commit on). Every
run uses a fresh database file, database or project. Each scenario runs in its own processes:

- **enqueue**: a producer process calls ``queue.enqueue(noop)`` once per task (sync, then
  ``await queue.enqueue(...)`` async), no batching, no worker running: tasks/s;
- **round trip**: an idle worker process (one worker, 8 slots); a client process enqueues one
  task and waits for its result with ``get(wait=True)``, ``--samples`` times, 5 ms apart:
  p50 and p95 in ms;
- **idle CPU**: that idle worker's process CPU time over ``--idle-window`` seconds before the
  round trips, as % of one core (from ``/proc``: Linux);
- **drain**: a producer process fills the queue with ``enqueue_many``; a worker process that
  connected beforehand is told to start and counts from its start to its last task: tasks/s;
  then ``--processes`` worker processes (default 2) told to start at once, timed here from
  "go" to the last success counted (every 10 ms).

Prints the median of ``--repeat`` runs per figure as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path += [str(HERE), str(HERE.parent / "tests")]

import bench_tasks  # noqa: E402
from bench_timing import drain_rate, thread_drain_rate  # noqa: E402

from omniq import ResultStore, TaskQueue  # noqa: E402
from omniq.queue import AsyncTaskQueue  # noqa: E402
from omniq.workers import AsyncWorker, ThreadPoolWorker  # noqa: E402

SLOTS = 8
_BATCH = 1000  # enqueue_many batch of the drain's producer
_WARM_UP = 20  # round trips left out of the figures (connections, subscriptions)


# --- the roles, each run as `cross_process.py --role NAME URL PROJECT N KIND` -------------------


def _task(kind: str) -> Any:
    return bench_tasks.async_noop if kind == "async" else bench_tasks.noop


def _worker(kind: str, queue: Any, results: Any) -> Any:
    cls = AsyncWorker if kind == "async" else ThreadPoolWorker
    return cls(queue=queue, result_store=results, max_workers=SLOTS)


def role_worker(url: str, project: str, n: int, kind: str) -> None:
    """A worker until stdin closes (n == 0: from the start; n < 0: from a "go" line); with
    n > 0, from "go" until it has run n tasks, printing its drain rate."""
    if kind == "async":

        async def run() -> None:
            queue = AsyncTaskQueue.from_url(url, project_name=project)
            results = _async_results(url, project)
            await queue.count()  # connected (and schema made) before "ready"
            worker = _worker(kind, queue, results)
            loop = asyncio.get_running_loop()
            if n <= 0:
                print("ready", flush=True)
                if n < 0:
                    await loop.run_in_executor(None, sys.stdin.readline)
                await worker.start()
                await loop.run_in_executor(None, sys.stdin.read)
                await worker.stop()
            else:
                print("ready", flush=True)
                await loop.run_in_executor(None, sys.stdin.readline)
                _report(await drain_rate(worker, n))
            await queue.close()
            await results.close()

        asyncio.run(run())
        return
    with (
        TaskQueue.from_url(url, project_name=project) as queue,
        ResultStore.from_url(url, project_name=project) as results,
    ):
        queue.count()
        worker = _worker(kind, queue, results)
        if n <= 0:
            print("ready", flush=True)
            if n < 0:
                sys.stdin.readline()
            worker.start()
            sys.stdin.read()
            worker.stop()
        else:
            print("ready", flush=True)
            sys.stdin.readline()
            _report(thread_drain_rate(worker, n))


def _async_results(url: str, project: str) -> Any:
    from omniq.storage import AsyncResultStorage

    return AsyncResultStorage.from_url(url, project_name=project)


def role_enqueue(url: str, project: str, n: int, kind: str) -> None:
    """One ``enqueue`` per task, sync then async: prints both rates."""
    func = _task(kind)
    with TaskQueue.from_url(url, project_name=project) as queue:
        queue.count()
        for _ in range(50):  # warm-up: statement caches, the loop thread
            queue.enqueue(func)
        started = time.perf_counter()
        for _ in range(n):
            queue.enqueue(func)
        sync_rate = n / (time.perf_counter() - started)

    async def run() -> float:
        queue = AsyncTaskQueue.from_url(url, project_name=project)
        try:
            await queue.count()
            for _ in range(50):
                await queue.enqueue(func)
            started = time.perf_counter()
            for _ in range(n):
                await queue.enqueue(func)
            return n / (time.perf_counter() - started)
        finally:
            await queue.close()

    _report(sync_rate, asyncio.run(run()))


def role_fill(url: str, project: str, n: int, kind: str) -> None:
    """Fill the queue with n tasks (``enqueue_many`` in batches)."""
    calls = [{"func": _task(kind)}] * _BATCH
    with TaskQueue.from_url(url, project_name=project) as queue:
        for done in range(0, n, _BATCH):
            queue.enqueue_many(calls[: min(_BATCH, n - done)])
    _report(0.0)


def role_client(url: str, project: str, n: int, kind: str) -> None:
    """n round trips (after a warm-up): prints p50 and p95 in ms."""
    func = _task(kind)
    latencies = []
    with (
        TaskQueue.from_url(url, project_name=project) as queue,
        ResultStore.from_url(url, project_name=project) as results,
    ):
        for i in range(n + _WARM_UP):
            time.sleep(0.005)  # let the worker go idle between samples
            started = time.perf_counter()
            task_id = queue.enqueue(func)
            results.get(task_id, wait=True, timeout=30)
            if i >= _WARM_UP:
                latencies.append(time.perf_counter() - started)
    latencies.sort()
    _report(latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.95)] * 1000)


def _report(*values: float) -> None:
    print(json.dumps(values), flush=True)


ROLES: dict[str, Callable[[str, str, int, str], None]] = {
    "worker": role_worker,
    "enqueue": role_enqueue,
    "fill": role_fill,
    "client": role_client,
}


# --- the conductor -----------------------------------------------------------------------------


def _spawn(role: str, url: str, project: str, n: int, kind: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, url, project, str(n), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> list[float]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"a benchmark process failed ({proc.returncode})")
    return list(json.loads(out.strip().splitlines()[-1]))


def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("a worker process did not start")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def enqueue_rates(url: str, project: str, n: int, kind: str) -> list[float]:
    """[sync, async] single-call enqueue rates in a producer process."""
    return _result(_spawn("enqueue", url, project, n, kind))


def idle_and_round_trip(
    url: str, project: str, samples: int, kind: str, window: float
) -> list[float]:
    """[idle worker CPU %, round trip p50 ms, p95 ms]."""
    worker = _spawn("worker", url, project, 0, kind)
    try:
        _ready(worker)
        time.sleep(1.0)  # past its start-up work (first claims, maintenance)
        cpu, wall = _cpu_seconds(worker.pid), time.monotonic()
        time.sleep(window)
        idle = (_cpu_seconds(worker.pid) - cpu) / (time.monotonic() - wall) * 100
        p50, p95 = _result(_spawn("client", url, project, samples, kind))
    finally:
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait(timeout=60)
    return [idle, p50, p95]


def drain(url: str, project: str, n: int, kind: str, processes: int = 1) -> float:
    """Tasks/s of worker processes over n tasks a producer process enqueued: measured in the
    worker (one process) or by this process counting successes (several)."""
    workers = [_spawn("worker", url, project, n if processes == 1 else -1, kind)]
    workers += [_spawn("worker", url, project, -1, kind) for _ in range(processes - 1)]
    try:
        for worker in workers:
            _ready(worker)
        _result(_spawn("fill", url, project, n, kind))
        with TaskQueue.from_url(url, project_name=project) as queue:
            started = time.perf_counter()
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            if processes == 1:
                return _result(workers[0])[0]
            while queue.count(status="success") < n:
                time.sleep(0.01)
            return n / (time.perf_counter() - started)
    finally:
        for worker in workers:
            if worker.poll() is None:
                assert worker.stdin is not None
                worker.stdin.close()
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()


# --- backends: a fresh URL per run ----------------------------------------------------------


@contextmanager
def backend_urls(name: str) -> Iterator[Callable[[], tuple[str, str]]]:
    """A function giving a fresh (url, project) per run, with the backend's server running."""
    root = Path(tempfile.mkdtemp(prefix="omniq-xproc-"))
    server: Any = None
    try:
        if name == "sqlite":
            yield lambda: (f"sqlite:///{root / uuid.uuid4().hex[:8]}.db", "bench")
            return
        if name == "postgres":
            from postgres_backend import Databases
            from servers.postgres import PostgresServer

            server = PostgresServer(durable=True)
            server.start()
            databases = Databases(server.dsn)
            yield lambda: (databases.fresh(), "bench")
            return
        if name == "redis":
            from servers.redis import RedisServer

            server = RedisServer(root / "redis")
        elif name == "nats":
            from servers.nats import NATSServer

            server = NATSServer()
        else:
            raise SystemExit(f"unknown backend {name!r}")
        server.start()
        url = server.url
        yield lambda: (url, f"b{uuid.uuid4().hex[:10]}")
    finally:
        if server is not None:
            (server.destroy if hasattr(server, "destroy") else server.stop)()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "redis", "nats"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--worker", choices=["thread", "async"], default="thread")
    parser.add_argument("--idle-window", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2, help="worker processes, 2nd drain")
    parser.add_argument("--role", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, url, project, n, kind = args.role
        ROLES[role](url, project, int(n), kind)
        return
    if args.backend is None:
        parser.error("--backend is required")
    n, kind = args.tasks, args.worker
    figures: dict[str, list[float]] = {}

    def add(title: str, value: float) -> None:
        figures.setdefault(title, []).append(value)

    with backend_urls(args.backend) as fresh:
        if args.backend == "nats":
            drain(*fresh(), min(n, 3000), kind)  # a fresh server's first writes are slower
        for _ in range(args.repeat):
            sync_rate, async_rate = enqueue_rates(*fresh(), n, kind)
            add("single-call sync `enqueue`, producer process", sync_rate)
            add("single-call async `enqueue`, producer process", async_rate)
            idle, p50, p95 = idle_and_round_trip(*fresh(), args.samples, kind, args.idle_window)
            add("round trip p50 (ms), idle worker process, client process", p50)
            add("round trip p95 (ms)", p95)
            add(f"idle worker CPU (% of a core over {args.idle_window:g} s)", idle)
            add(f"drain {n:,} tasks, worker process, producer process", drain(*fresh(), n, kind))
            if args.processes > 1:
                rate = drain(*fresh(), n, kind, args.processes)
                add(f"drain {n:,} tasks, {args.processes} worker processes", rate)
    worker = "AsyncWorker" if kind == "async" else "ThreadPoolWorker"
    print(f"\n{args.backend}, {worker}({SLOTS}), medians of {args.repeat}:\n")
    print("| figure | median | runs |")
    print("| --- | ---: | --- |")
    for title, values in figures.items():
        fmt = "{:,.2f}" if "(ms)" in title or "CPU" in title else "{:,.0f}"
        runs = ", ".join(fmt.format(v) for v in values)
        print(f"| {title} | {fmt.format(statistics.median(values))} | {runs} |", flush=True)


if __name__ == "__main__":
    main()
