"""Benchmarks of the Redis backend (queue + results), against a real redis-server.

    .venv/bin/python benchmarks/redis_backend.py [--repeat 3] [--tasks 10000] [--appendonly]

Starts its own ``redis-server`` on a loopback port in a temporary directory (no persistence
unless ``--appendonly``, which turns on AOF with ``appendfsync everysec``) and prints the median
of ``--repeat`` runs per scenario as a Markdown table. Every run uses a fresh project.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# This file is named like the driver: keep its directory off the front of sys.path, so that
# `import redis` finds redis-py, and append it for bench_tasks.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import bench_tasks  # noqa: E402
from bench_timing import drain_rate, print_table, round_trip_p50_ms  # noqa: E402

from omniq.backends.redis.queue import AsyncRedisTaskQueue  # noqa: E402
from omniq.backends.redis.storage import AsyncRedisResultStorage  # noqa: E402
from omniq.workers import AsyncWorker  # noqa: E402

SLOTS = 8


def start_server(directory: str, appendonly: bool) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
        "--daemonize", "no", "--save", "", "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec", "--logfile", os.path.join(directory, "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("redis-server did not start")


def components(url: str, project: str) -> tuple[AsyncRedisTaskQueue, AsyncRedisResultStorage]:
    return (
        AsyncRedisTaskQueue(url=url, project_name=project),
        AsyncRedisResultStorage(url=url, project_name=project),
    )


def drain(url: str, n: int) -> float:
    """AsyncWorker with 8 slots in this process, n async no-op tasks, results stored: tasks/s."""

    async def run() -> float:
        queue, results = components(url, f"b{uuid.uuid4().hex[:10]}")
        await queue.enqueue_many([{"func": bench_tasks.async_noop}] * n)
        worker = AsyncWorker(queue=queue, result_store=results, max_workers=SLOTS)
        rate = await drain_rate(worker, n)
        assert await queue.count(status="success") == n
        await queue.purge()
        await queue.close()
        await results.close()
        return rate

    return asyncio.run(run())


def enqueue_many(url: str, n: int) -> float:
    """``enqueue_many`` of n tasks: tasks/s."""

    async def run() -> float:
        queue, results = components(url, f"b{uuid.uuid4().hex[:10]}")
        await queue.count()  # connect outside the timing
        calls = [{"func": bench_tasks.async_noop}] * n
        started = time.perf_counter()
        await queue.enqueue_many(calls)
        elapsed = time.perf_counter() - started
        await queue.purge()
        await queue.close()
        await results.close()
        return n / elapsed

    return asyncio.run(run())


def round_trip_ms(url: str, samples: int = 300) -> float:
    """Enqueue -> result with an idle AsyncWorker (8 slots) in this process: p50 in ms."""

    async def run() -> float:
        queue, results = components(url, f"b{uuid.uuid4().hex[:10]}")
        worker = AsyncWorker(queue=queue, result_store=results, max_workers=SLOTS)
        await worker.start()
        p50 = await round_trip_p50_ms(queue, results, samples)
        await worker.stop()
        await queue.purge()
        await queue.close()
        await results.close()
        return p50

    return asyncio.run(run())


def raw_blmove_loop(url: str, n: int) -> float:
    """Baseline: redis.asyncio alone, 8 consumers doing BLMOVE then LREM (the ack): items/s."""

    async def run() -> float:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        key = f"raw:{uuid.uuid4().hex[:10]}"
        await client.rpush(f"{key}:q", *[str(i) for i in range(n)])
        done = 0

        async def consume() -> None:
            nonlocal done
            while done < n:
                item = await client.blmove(f"{key}:q", f"{key}:p", 0.05, "LEFT", "RIGHT")
                if item is None:
                    continue
                await client.lrem(f"{key}:p", 1, item)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(consume() for _ in range(SLOTS)))
        elapsed = time.perf_counter() - started
        await client.aclose()
        return n / elapsed

    return asyncio.run(run())


def raw_get_us(url: str, samples: int = 3000) -> float:
    """Calibration: one redis.asyncio GET round trip, in microseconds (machine speed now)."""

    async def run() -> float:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        await client.get("calibration")
        started = time.perf_counter()
        for _ in range(samples):
            await client.get("calibration")
        elapsed = time.perf_counter() - started
        await client.aclose()
        return elapsed / samples * 1e6

    return asyncio.run(run())


_CHILD = """
import asyncio, sys
sys.path.append(sys.argv[4])  # bench_tasks; appended, so `import redis` finds redis-py
from omniq.backends.redis.queue import AsyncRedisTaskQueue
from omniq.backends.redis.storage import AsyncRedisResultStorage
from omniq.workers import AsyncWorker

async def main(url, project, slots):
    worker = AsyncWorker(queue=AsyncRedisTaskQueue(url=url, project_name=project),
                         result_store=AsyncRedisResultStorage(url=url, project_name=project),
                         max_workers=slots)
    await worker.queue.count()  # connect before the start line
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await worker.run()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def round_trip_other_process_ms(url: str, samples: int = 300) -> float:
    """Enqueue -> result with an idle worker (8 slots) in another process: p50 in ms."""

    async def run() -> float:
        project = f"b{uuid.uuid4().hex[:10]}"
        queue, results = components(url, project)
        (proc,) = start_workers(url, project, 1)
        try:
            p50 = await round_trip_p50_ms(queue, results, samples)
        finally:
            stop_workers([proc])
        await queue.purge()
        await queue.close()
        await results.close()
        return p50

    return asyncio.run(run())


def start_workers(url: str, project: str, processes: int) -> list[subprocess.Popen[bytes]]:
    """Worker processes, connected and ready, then told to start."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, project, str(SLOTS), str(HERE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def drain_processes(url: str, n: int, processes: int) -> float:
    """n tasks enqueued first, then ``processes`` worker processes (8 slots each), connected,
    told to start together: tasks/s from then until all n succeeded (as seen by polling)."""

    async def run() -> float:
        project = f"b{uuid.uuid4().hex[:10]}"
        queue, results = components(url, project)
        await queue.enqueue_many([{"func": bench_tasks.async_noop}] * n)
        procs = start_workers(url, project, processes)  # connected first; timed from "go"
        started = time.perf_counter()
        while await queue.count(status="success") < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        stop_workers(procs)
        await queue.purge()
        await queue.close()
        await results.close()
        return n / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--appendonly", action="store_true", help="AOF, appendfsync everysec")
    parser.add_argument("--url", help="use this server instead of starting one")
    parser.add_argument("--only", help="run only the scenarios whose title contains this")
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.url:
            url = args.url
        else:
            server, url = start_server(tmp, args.appendonly)
        try:
            scenarios = [
                ("calibration: one redis.asyncio GET round trip", "us", "",
                 lambda: raw_get_us(url)),
                (f"baseline: raw redis.asyncio BLMOVE+LREM loop, {SLOTS} consumers, {n} items",
                 "items/s", "(~9,400)", lambda: raw_blmove_loop(url, n)),
                (f"AsyncWorker({SLOTS}) in-process, drain {n} no-op tasks, results stored",
                 "tasks/s", ">= 8,000", lambda: drain(url, n)),
                (f"enqueue_many({n})", "tasks/s", ">= 30,000", lambda: enqueue_many(url, n)),
                ("enqueue -> result round trip, idle worker in this process (p50 of 300)", "ms",
                 "< 1.5", lambda: round_trip_ms(url)),
                ("enqueue -> result round trip, idle worker in another process (p50 of 300)",
                 "ms", "< 1.5", lambda: round_trip_other_process_ms(url)),
            ]  # fmt: skip
            for k in (1, 2, 4):
                scenarios.append(
                    (
                        f"{k} worker process(es) x {SLOTS} slots, drain {n} no-op tasks",
                        "tasks/s",
                        "",
                        lambda k=k: drain_processes(url, n, k),
                    )
                )
            print(f"Redis {'AOF everysec' if args.appendonly else 'no persistence'}, {url}")
            print_table(scenarios, args.repeat, args.only)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
