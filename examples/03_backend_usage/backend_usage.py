"""OmniQ backend usage: one set of connection arguments builds the task queue, the result storage
and the event storage.

A backend (``omniq.backend``) is a factory: it holds the connection arguments of one kind of
storage (a SQLite file, a directory, a server) and builds any of the three components from them.
This script shows the three ways to use one:

1. ``OmniQ.from_backend(backend)``: everything on one backend (here SQLite);
2. mixing backends: tasks as files, results in SQLite, events in memory;
3. ``TaskQueue/ResultStore/EventStore.from_backend(backend)``: components for your own worker.

Everything lives in a temporary directory that is removed at the end.

Run it with ``python backend_usage.py``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from omniq import EventStore, OmniQ, ResultStore, TaskQueue
from omniq.backend import FileBackend, MemoryBackend, SQLiteBackend
from omniq.workers import ThreadPoolWorker

# --- task functions: module-level, sync or async ---------------------------------------------


def resize_image(name: str, width: int) -> str:
    """A sync task."""
    time.sleep(0.01)  # pretend to work
    return f"{name} resized to {width}px"


async def fetch_price(symbol: str) -> float:
    """An async task: the thread-pool worker runs it on an event loop in its thread."""
    await asyncio.sleep(0.01)  # pretend to call an API
    return {"ACME": 12.5, "OMNI": 99.0}.get(symbol, 0.0)


def send_report(recipient: str) -> str:
    """Used to show the order in which named queues are served."""
    return f"report sent to {recipient}"


# --- 1. one backend for everything -----------------------------------------------------------


def one_backend(data_dir: str) -> None:
    print("\n1. One SQLite backend builds the queue, the results and the events")
    # The connection arguments, given once. A server backend takes its own instead:
    # PostgresBackend(dsn=...), RedisBackend(url=...), NATSBackend(servers=[...]).
    backend = SQLiteBackend(project_name="shop", db_path=os.path.join(data_dir, "shop.db"))
    print(f"   {backend!r}")

    with OmniQ.from_backend(
        backend, worker_type="thread_pool", worker_config={"max_workers": 4}
    ) as oq:
        # The facade keeps the async core of each component (its own methods are sync).
        print(f"   task queue:     {type(oq.task_queue).__name__}")
        print(f"   result storage: {type(oq.result_store).__name__}")
        print(f"   event storage:  {type(oq.event_store).__name__}")

        oq.start_worker()
        ids = [
            oq.enqueue(resize_image, func_args={"name": "cat.png", "width": 640}),
            oq.enqueue(resize_image, func_args={"name": "dog.png", "width": 320}),
            oq.enqueue(fetch_price, func_args={"symbol": "OMNI"}),
        ]
        for tid in ids:
            print(f"   result: {oq.get_result(tid, wait=True, timeout=10).unwrap()!r}")
        events = [event.type.value for event in oq.get_events(task_id=ids[0])]
        print(f"   events of the first task: {', '.join(events)}")
        oq.stop_worker()


# --- 2. mixing backends ----------------------------------------------------------------------


def mixed_backends(data_dir: str) -> None:
    print("\n2. Mixing backends: tasks as files, results in SQLite, events in memory")
    file_backend = FileBackend(project_name="shop", base_dir=os.path.join(data_dir, "files"))
    sqlite_backend = SQLiteBackend(
        project_name="shop", db_path=os.path.join(data_dir, "results.db")
    )
    memory_backend = MemoryBackend(project_name="shop")

    with OmniQ.from_backend(
        file_backend,  # the task queue
        result_store_backend=sqlite_backend,
        event_store_backend=memory_backend,
        worker_type="thread_pool",
        worker_config={"max_workers": 4, "poll_interval": 0.1},
    ) as oq:
        print(f"   task queue:     {type(oq.task_queue).__name__}")
        print(f"   result storage: {type(oq.result_store).__name__}")
        print(f"   event storage:  {type(oq.event_store).__name__}")

        oq.start_worker()
        symbols = ["ACME", "OMNI"]
        ids = [oq.enqueue(fetch_price, func_args={"symbol": s}) for s in symbols]
        report_id = oq.enqueue(send_report, func_args={"recipient": "finance@example.com"})
        for symbol, tid in zip(symbols, ids, strict=True):
            print(
                f"   fetch_price({symbol!r}) -> {oq.get_result(tid, wait=True, timeout=10).value}"
            )
        print(f"   send_report -> {oq.get_result(report_id, wait=True, timeout=10).value!r}")
        completed = oq.get_events(event_type="complete")
        print(f"   'complete' events in memory: {len(completed)}")
        oq.stop_worker()

    # The results outlive the facade: they are in the SQLite file. Any process can read them
    # with the same backend arguments.
    with ResultStore.from_backend(sqlite_backend) as results:
        stored = results.get(report_id)
        print(f"   read back later from results.db: {stored.value!r} ({stored.status.value})")


# --- 3. components from a backend ------------------------------------------------------------


def components_from_backend(data_dir: str) -> None:
    print("\n3. Components from a backend, wired by your own worker")
    backend = SQLiteBackend(project_name="reports", db_path=os.path.join(data_dir, "reports.db"))

    with (
        TaskQueue.from_backend(backend, queues=["high", "low"]) as queue,
        ResultStore.from_backend(backend) as result_store,
        EventStore.from_backend(backend) as event_store,
    ):
        print(f"   {type(queue).__name__} serving {queue.queues}")
        # Queue first, run later: with one thread the worker takes "high" before "low".
        low = queue.enqueue(send_report, {"recipient": "archive@example.com"}, queue_name="low")
        high = queue.enqueue(send_report, {"recipient": "ceo@example.com"}, queue_name="high")
        pending = {name: queue.count(name, "pending") for name in queue.queues}
        print(f"   pending before the worker starts: {pending}")

        worker = ThreadPoolWorker(
            queue=queue,
            result_store=result_store,
            event_store=event_store,
            max_workers=1,  # the queues of `queue` are consumed in order: high, then low
        )
        worker.start()
        try:
            results = [worker.get_result(tid, wait=True, timeout=10) for tid in (low, high)]
        finally:
            worker.stop()
        for position, res in enumerate(sorted(results, key=lambda r: r.started_at), start=1):
            print(f"   {position}. [{res.queue_name}] {res.value}")
        # After stop() every event has been written.
        history = [event.type.value for event in event_store.get_events(task_id=high)]
        print(f"   events of the 'high' task: {', '.join(history)}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="omniq-backends-") as data_dir:
        print(f"OmniQ backend usage (data in {data_dir})")
        one_backend(data_dir)
        mixed_backends(data_dir)
        components_from_backend(data_dir)
    print("\nDone.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
