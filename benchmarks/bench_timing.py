"""How every benchmark script times a drain and a round trip, and prints its table."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import bench_tasks

Scenario = tuple[str, str, str, Callable[[], float]]
"""(title, unit, bar, run): ``run`` measures once and returns the value in ``unit``."""


async def drain_rate(worker: Any, n: int) -> float:
    """Start an async ``worker`` over a queue holding ``n`` tasks, stop it when it has processed
    them all: tasks/s from start to the last task."""
    started = time.perf_counter()
    await worker.start()
    while worker.processed < n:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await worker.stop()
    return n / elapsed


def thread_drain_rate(worker: Any, n: int) -> float:
    """``drain_rate`` for a sync worker (its async core counts what it processed)."""
    started = time.perf_counter()
    worker.start()
    core = worker._target()
    while core.processed < n:
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    worker.stop()
    return n / elapsed


async def round_trip_p50_ms(queue: Any, results: Any, samples: int) -> float:
    """Enqueue -> result of an async no-op task with a worker already idle: p50 in ms."""
    latencies = []
    for _ in range(samples):
        await asyncio.sleep(0.002)  # let the worker go idle between samples
        started = time.perf_counter()
        task_id = await queue.enqueue(bench_tasks.async_noop)
        await results.get(task_id, wait=True, timeout=10)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


def median_of(repeat: int, func: Callable[[], float]) -> tuple[float, list[float]]:
    runs = [func() for _ in range(repeat)]
    return statistics.median(runs), runs


def print_table(scenarios: Sequence[Scenario], repeat: int, only: str | None = None) -> None:
    """Run each scenario ``repeat`` times (those whose title contains ``only``, if given) and
    print a Markdown row of its median and runs as soon as it is measured."""
    print("| scenario | median | runs | bar |")
    print("| --- | --- | --- | --- |")
    for title, unit, bar, func in scenarios:
        if only and only not in title:
            continue
        value, runs = median_of(repeat, func)
        shown = ", ".join(f"{r:,.2f}" if unit == "ms" else f"{r:,.0f}" for r in runs)
        fmt = f"{value:,.2f} {unit}" if unit == "ms" else f"{value:,.0f} {unit}"
        print(f"| {title} | {fmt} | {shown} | {bar} |", flush=True)
