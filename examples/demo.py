"""OmniQ demo: a few hundred tasks through the embedded SQLite default, with a live progress bar
and a summary table. Run it with ``scripts/demo`` (or ``python examples/demo.py``)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from datetime import timedelta

from omniq import OmniQ, TaskStatus, current_task


def resize_image(image_id: int, width: int) -> dict[str, int]:
    """A CPU-light sync task."""
    time.sleep(random.uniform(0.001, 0.004))
    return {"image": image_id, "width": width}


async def fetch_page(page: int) -> int:
    """An async task (simulated I/O)."""
    await asyncio.sleep(random.uniform(0.001, 0.01))
    return page * 100


def flaky_payment(order: int) -> str:
    """Fails on its first two attempts, then succeeds: shows retries with backoff."""
    if current_task().attempt <= 2:
        raise ConnectionError(f"payment gateway timeout for order {order}")
    return f"order {order} paid"


def broken_report(report: int) -> None:
    """Always fails: ends FAILED (a dead letter) once its retries are spent."""
    raise ValueError(f"report {report} has no data")


def send_reminder(user: str) -> str:
    return f"reminder sent to {user}"


def progress(done: int, total: int, started: float) -> None:
    width = 40
    filled = int(width * done / total)
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stdout.write(
        f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {rate:7.0f} tasks/s"
    )
    sys.stdout.flush()


def main() -> int:
    random.seed(7)
    print("OmniQ demo: embedded SQLite queue, results and events (./omniq_data/omniq.db)")
    with OmniQ(
        project_name="demo",
        worker="thread",
        worker_config={"max_workers": 8, "queues": ["high", "default"]},
    ) as oq:
        oq.purge()
        calls = []
        calls += [dict(func=resize_image, args=(i, 640), queue_name="default") for i in range(200)]
        calls += [
            dict(func=fetch_page, func_args={"page": i}, queue_name="default") for i in range(150)
        ]
        calls += [
            dict(func=send_reminder, args=(f"vip-{i}",), queue_name="high", priority=10)
            for i in range(20)
        ]
        calls += [
            dict(func=flaky_payment, args=(i,), max_retries=3, retry_delay=0.05) for i in range(10)
        ]
        calls += [
            dict(func=broken_report, args=(i,), max_retries=1, retry_delay=0.05) for i in range(5)
        ]
        calls.append(dict(func=send_reminder, args=("later",), run_in=timedelta(seconds=1)))
        started = time.perf_counter()
        ids = oq.enqueue_many(calls)
        enqueued = time.perf_counter() - started
        print(
            f"  enqueued {len(ids)} tasks in {enqueued * 1000:.0f} ms; "
            "starting a thread-pool worker (8 threads)"
        )

        oq.start_worker()
        total = len(ids)
        while True:
            done = sum(oq.count(status=s) for s in (TaskStatus.SUCCESS, TaskStatus.FAILED))
            progress(done, total, started)
            if done >= total:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        print()
        oq.stop_worker()

        rows: Counter[tuple[str, str]] = Counter()
        attempts: Counter[str] = Counter()
        for task_id, call in zip(ids, calls, strict=True):
            result = oq.get_result(task_id)
            name = call["func"].__name__
            rows[(name, result.status.value)] += 1
            attempts[name] += result.attempts
        retries = len(oq.get_events(event_type="retry", limit=100_000))

        print()
        print(f"  {'function':<16}{'status':<10}{'tasks':>7}{'attempts':>10}")
        print("  " + "-" * 43)
        for (name, status), n in sorted(rows.items()):
            print(f"  {name:<16}{status:<10}{n:>7}{attempts[name]:>10}")
        print("  " + "-" * 43)
        failed = sum(n for (_, s), n in rows.items() if s == "failed")
        print(
            f"  {total} tasks in {elapsed:.2f} s ({total / elapsed:.0f} tasks/s), "
            f"{retries} retries, {failed} dead letters (FAILED, requeueable)"
        )
        delayed = oq.get_result(ids[-1])
        waited = (delayed.started_at - oq.get_task(ids[-1]).created_at).total_seconds()
        print(f"  the delayed task ran {waited:.1f} s after it was enqueued: {delayed.value!r}")
    return 0 if failed == 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
