"""OmniQ component usage: build the task queue, result storage, event storage and worker yourself.

Here the tasks live in a *file* queue, while results and events go to an embedded *SQLite*
database: each component is configured on its own and they are wired together by the worker.
Everything lives in a temporary directory that is removed at the end.

Run it with ``python component_usage.py``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from omniq import TaskStatus, current_task
from omniq.config import Settings
from omniq.queue import AsyncFileTaskQueue, FileTaskQueue
from omniq.storage import (
    AsyncSQLiteEventStorage,
    AsyncSQLiteResultStorage,
    SQLiteEventStorage,
    SQLiteResultStorage,
)
from omniq.workers import AsyncWorker, ThreadPoolWorker

QUEUES = ["high", "medium", "low"]  # named queues, in priority order: first = highest


# --- task functions: module-level, sync or async ---------------------------------------------


def process_order(order_id: int, amount: float) -> dict[str, object]:
    """A sync task: runs in one of the worker's threads."""
    time.sleep(0.02)  # pretend to work
    return {"order": order_id, "total": round(amount * 1.2, 2), "queue": current_task().queue_name}


async def fetch_price(symbol: str) -> float:
    """An async task: a ThreadPoolWorker runs it on an event loop in its thread, an AsyncWorker
    on the worker's own loop."""
    await asyncio.sleep(0.02)  # pretend to call an API
    return {"ACME": 12.5, "OMNI": 99.0}.get(symbol, 0.0)


def validate_coupon(code: str) -> str:
    """Fails for unknown codes."""
    if code != "WELCOME10":
        raise ValueError(f"unknown coupon {code!r}")
    return "10% off"


# --- 1. sync components and a ThreadPoolWorker -----------------------------------------------


def sync_components(base_dir: str) -> None:
    print("\n1. A file task queue with SQLite results and events")
    queue_dir = os.path.join(base_dir, "file-queue")  # one file per task under this directory
    db_dir = os.path.join(base_dir, "sqlite")  # results and events share db_dir/omniq.db

    # Fine-grained configuration: each component takes its own options. The queue's settings
    # give the defaults of every task enqueued through it (here: one retry after 0.1 s).
    queue_settings = Settings(RETRY_ATTEMPTS=1, RETRY_DELAY=0.1)

    with (
        FileTaskQueue(
            project_name="shop",
            base_dir=queue_dir,
            queues=QUEUES,
            settings=queue_settings,
        ) as queue,
        SQLiteResultStorage(project_name="shop", base_dir=db_dir) as result_store,
        SQLiteEventStorage(project_name="shop", base_dir=db_dir) as event_store,
    ):
        print(f"   task queue:     {type(queue).__name__} in {queue_dir}")
        print(f"   result storage: {type(result_store).__name__} in {db_dir}")
        print(f"   event storage:  {type(event_store).__name__} in {db_dir}")

        # Enqueue on the queue object itself; nothing runs yet because no worker is started.
        ids = {
            "low": queue.enqueue(process_order, {"order_id": 3, "amount": 10.0}, queue_name="low"),
            "medium": queue.enqueue(
                process_order, {"order_id": 2, "amount": 20.0}, queue_name="medium"
            ),
            "high": queue.enqueue(
                process_order, {"order_id": 1, "amount": 30.0}, queue_name="high"
            ),
            "price": queue.enqueue(fetch_price, {"symbol": "ACME"}, queue_name="medium"),
            "coupon": queue.enqueue(validate_coupon, {"code": "FREE100"}, queue_name="low"),
        }
        for name in QUEUES:
            print(f"   pending in {name!r}: {queue.count(queue_name=name, status='pending')}")
        coupon_task = queue.get_task(ids["coupon"])
        print(
            f"   defaults from the queue's settings: max_retries={coupon_task.max_retries}, "
            f"retry_delay={coupon_task.retry_delay}"
        )

        # The worker wires the three components together. It consumes the named queues in
        # strict priority order; one thread makes that order visible.
        worker = ThreadPoolWorker(
            queue=queue,
            result_store=result_store,
            event_store=event_store,
            queues=QUEUES,
            max_workers=1,
            poll_interval=0.1,  # how long an idle worker waits before looking again
        )
        worker.start()  # returns at once: tasks run in the background
        try:
            print("   results, in the order the worker ran them:")
            results = [worker.get_result(tid, wait=True, timeout=10) for tid in ids.values()]
            for res in sorted(results, key=lambda r: r.started_at):
                shown = res.value if res.status is TaskStatus.SUCCESS else res.error.message
                print(f"     [{res.queue_name:<6}] {res.status.value:<7} {shown}")
        finally:
            worker.stop()  # graceful: no new claims, running tasks finish
        print(
            f"   worker stopped; tasks succeeded: {queue.count(status='success')}, "
            f"failed: {queue.count(status='failed')}"
        )

        # Each component is usable on its own: read a result straight from the result storage
        # and the task's history straight from the event storage.
        stored = result_store.get(ids["high"])
        print(f"   result_store.get(high) -> {stored.value} after {stored.attempts} attempt(s)")
        history = [e.type.value for e in event_store.get_events(task_id=ids["coupon"])]
        print(f"   events of the failing coupon task: {', '.join(history)}")


# --- 2. the async variant --------------------------------------------------------------------


async def async_components(base_dir: str) -> None:
    print("\n2. Async components and an AsyncWorker")
    db_path = os.path.join(base_dir, "async-results.db")
    # The file queue also takes an fsspec URL: memory:// keeps the tasks in this process.
    async with (
        AsyncFileTaskQueue(project_name="prices", base_dir="memory://omniq-example") as queue,
        AsyncSQLiteResultStorage(project_name="prices", db_path=db_path) as result_store,
        AsyncSQLiteEventStorage(project_name="prices", db_path=db_path) as event_store,
    ):
        # `async with` starts the worker on the running event loop and stops it at the end.
        async with AsyncWorker(
            queue=queue,
            result_store=result_store,
            event_store=event_store,
            max_workers=8,  # up to 8 coroutines at once on this loop (sync functions: threads)
        ) as worker:
            symbols = ["ACME", "OMNI", "XYZ"]
            ids = [await queue.enqueue(fetch_price, {"symbol": s}) for s in symbols]
            ids.append(await queue.enqueue(process_order, {"order_id": 4, "amount": 5.0}))
            results = await asyncio.gather(*(worker.get_result(t, timeout=10) for t in ids))
        for symbol, res in zip(symbols, results, strict=False):
            print(f"   fetch_price({symbol!r}) -> {res.unwrap()}")
        print(f"   process_order (a sync function, run in a thread) -> {results[-1].unwrap()}")
        # The worker writes events in batches; once it has stopped, all of them are stored.
        completed = await event_store.get_events(event_type="complete")
        print(f"   'complete' events stored: {len(completed)}")
        await queue.purge()  # the memory:// filesystem lives as long as the process


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="omniq-components-") as base_dir:
        print(f"OmniQ component usage (data in {base_dir})")
        sync_components(base_dir)
        asyncio.run(async_components(base_dir))
    print("\nDone.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
