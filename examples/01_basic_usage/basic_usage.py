"""OmniQ basic usage: the ``OmniQ`` facade on embedded SQLite.

One object holds the task queue, the result store, the event store and a worker. Everything here
lives in a temporary directory that is removed at the end.

Run it with ``python basic_usage.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import timedelta

from omniq import AsyncOmniQ, OmniQ, TaskFailedError, current_task

# Where the embedded SQLite database (omniq.db) goes. A real application would use a fixed
# directory such as "./omniq_data" (the default, see Settings.BASE_DIR / OMNIQ_BASE_DIR).
DATA_DIR = tempfile.mkdtemp(prefix="omniq-basic-")

# The application object, created at module level like a Celery or Huey app so that the
# ``@oq.task`` decorator below can use it.
oq = OmniQ(
    project_name="basic_usage",
    base_dir=DATA_DIR,
    worker="thread",  # a thread-pool worker; "async" runs coroutines on an event loop
    worker_config={"max_workers": 4, "queues": ["high", "default", "low"]},
)


# --- task functions: plain module-level functions, sync or async ---------------------------


def greet(name: str, greeting: str = "Hello") -> str:
    """A sync task."""
    return f"{greeting}, {name}!"


async def fetch_price(symbol: str) -> float:
    """An async task: the worker runs it in an event loop."""
    await asyncio.sleep(0.05)  # pretend to call an API
    return {"ACME": 12.5, "OMNI": 99.0}.get(symbol, 0.0)


@oq.task(queue_name="high", max_retries=2)
def send_welcome_email(user: str) -> str:
    """A decorated task: ``send_welcome_email.enqueue(...)`` queues it with these options."""
    return f"welcome e-mail sent to {user}"


def log_order(label: str) -> str:
    """Used to show the order in which queued tasks run."""
    return label


def flaky_division(a: int, b: int) -> float:
    """Fails on every attempt (b == 0): shows retries and error reporting."""
    attempt = current_task().attempt
    print(f"    attempt {attempt}: computing {a} / {b}")
    return a / b


# --- the walk-through ------------------------------------------------------------------------


def basic_tasks() -> None:
    print("\n1. Sync and async functions, keyword arguments in func_args")
    tid = oq.enqueue(greet, func_args={"name": "Tom"})
    print(f"   enqueued greet -> task id {tid[:8]}...")
    print(f"   result: {oq.get_result(tid, wait=True, timeout=10).unwrap()!r}")

    tid = oq.enqueue(greet, func_args={"name": "Ana", "greeting": "Hola"}, queue_name="low")
    print(f"   greet on the 'low' queue: {oq.get_result(tid, wait=True, timeout=10).unwrap()!r}")

    tid = oq.enqueue(fetch_price, func_args={"symbol": "OMNI"})
    result = oq.get_result(tid, wait=True, timeout=10)
    print(f"   async fetch_price('OMNI') -> {result.value} (status {result.status.value})")

    print("\n2. The @oq.task decorator")
    print(f"   calling it directly still works: {send_welcome_email('local-user')!r}")
    tid = send_welcome_email.enqueue("alice@example.com")
    print(f"   .enqueue(...) -> {oq.get_result(tid, wait=True, timeout=10).unwrap()!r}")


def priorities_and_named_queues() -> None:
    print("\n3. Named queues and priorities")
    # Queue everything first, with the worker stopped, then let one thread take tasks in order:
    # the "high" queue before "default" before "low" (the worker's `queues` list), and inside a
    # queue the higher priority first, FIFO among equals.
    oq.stop_worker()
    ids = [
        oq.enqueue(log_order, func_args={"label": "low"}, queue_name="low"),
        oq.enqueue(log_order, func_args={"label": "default, priority 0"}),
        oq.enqueue(log_order, func_args={"label": "default, priority 5"}, priority=5),
        oq.enqueue(log_order, func_args={"label": "high"}, queue_name="high"),
    ]
    oq.start_worker(max_workers=1)
    results = [oq.get_result(tid, wait=True, timeout=10) for tid in ids]
    for position, res in enumerate(sorted(results, key=lambda r: r.started_at), start=1):
        print(f"   {position}. {res.value}")
    oq.stop_worker()
    oq.start_worker()  # back to the configured 4 threads


def delayed_task() -> None:
    print("\n4. Delayed execution with run_in")
    start = time.monotonic()
    tid = oq.enqueue(greet, func_args={"name": "future me"}, run_in=timedelta(seconds=1))
    print(f"   status right after enqueue: {oq.get_task(tid).status.value}")
    value = oq.get_result(tid, wait=True, timeout=10).unwrap()
    print(f"   {value!r} after {time.monotonic() - start:.1f} s")


def failing_task() -> None:
    print("\n5. A failing task with retries")
    tid = oq.enqueue(flaky_division, func_args={"a": 1, "b": 0}, max_retries=2, retry_delay=0.1)
    result = oq.get_result(tid, wait=True, timeout=10)
    print(f"   status: {result.status.value} after {result.attempts} attempts")
    print(f"   error:  {result.error.type}: {result.error.message}")
    try:
        result.unwrap()
    except TaskFailedError as exc:
        print(f"   unwrap() raised TaskFailedError: {exc}")

    print("\n6. The event log of that task")
    for event in oq.get_events(task_id=tid):
        extra = f" attempt {event.attempt}" if event.attempt else ""
        if event.error is not None:
            extra += f" ({event.error.type})"
        print(f"   {event.timestamp:%H:%M:%S.%f} {event.type.value:<10}{extra}")


async def async_facade() -> None:
    print("\n7. AsyncOmniQ: the same API, awaited")
    async with AsyncOmniQ(
        project_name="basic_usage_async", base_dir=DATA_DIR, worker="async"
    ) as aoq:
        await aoq.start_worker()
        ids = [
            await aoq.enqueue(fetch_price, func_args={"symbol": symbol})
            for symbol in ("ACME", "OMNI")
        ]
        ids.append(await aoq.enqueue(greet, func_args={"name": "async world"}))
        for tid in ids:
            result = await aoq.get_result(tid, wait=True, timeout=10)
            print(f"   {result.value!r}")
        await aoq.stop_worker()


def main() -> int:
    print(f"OmniQ basic usage (embedded SQLite in {DATA_DIR})")
    try:
        with oq:  # closing the facade stops the worker and closes every component
            oq.start_worker()
            basic_tasks()
            priorities_and_named_queues()
            delayed_task()
            failing_task()
            oq.stop_worker()
        asyncio.run(async_facade())
    finally:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    print("\nDone.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
