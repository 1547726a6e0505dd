"""Task functions used by the tests; importable by worker subprocesses (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import omniq


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def noop() -> None:
    return None


async def async_noop() -> None:
    return None


def record(path: str, item: int) -> int:
    """Append ``item`` to a file (O_APPEND: one write per run, safe across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{item}\n".encode())
    finally:
        os.close(fd)
    return item


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def fail_times(path: str, times: int) -> str:
    """Fail the first ``times`` runs (counted in a file), then succeed."""
    counter = Path(path)
    runs = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(runs + 1))
    if runs < times:
        raise RuntimeError(f"failure {runs + 1} of {times}")
    return "ok"


def block_until_killed(marker: str, seconds: float = 60.0) -> str:
    """First run: mark that it started, then sleep (the test kills the worker). Later runs: done."""
    marker_path = Path(marker)
    if marker_path.exists():
        return "second run"
    marker_path.write_text(str(os.getpid()))
    time.sleep(seconds)
    return "first run"


def relay_after_kill(value: object, marker: str) -> str:
    """A workflow step that blocks on its first run (see block_until_killed), then relays."""
    return f"{value}:{block_until_killed(marker)}"


async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def cooperative_sleep(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx = omniq.current_task()
        if ctx is not None and ctx.cancelled:
            return "stopped early"
        time.sleep(0.01)
    return "slept"


def whoami() -> dict[str, object]:
    ctx = omniq.current_task()
    assert ctx is not None
    return {"task_id": ctx.task_id, "attempt": ctx.attempt}


def pid() -> int:
    return os.getpid()


def crash(code: int = 3) -> None:
    os._exit(code)


def burn(ms: float) -> int:
    """Pure-Python CPU work for about ``ms`` milliseconds (holds the GIL)."""
    deadline = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < deadline:
        n += 1
    return n


def wait_for_gate(started: str, gate: str, seconds: float = 60.0) -> int:
    """Mark that it started, then wait until the file ``gate`` exists (at most ``seconds``).

    Returns the pid of the process that ran it."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


# --- bad tasks: each must fail only itself ---------------------------------------------------


def exit_now(code: int = 3) -> None:
    sys.exit(code)


async def async_exit_now(code: int = 3) -> None:
    await asyncio.sleep(0)
    sys.exit(code)


def interrupt() -> None:
    raise KeyboardInterrupt


def generator_exit() -> None:
    raise GeneratorExit


def stop_iteration() -> None:
    raise StopIteration("out of items")


def raise_timeout(message: str = "socket timed out") -> None:
    raise TimeoutError(message)


async def async_wait_for_times_out() -> None:
    await asyncio.wait_for(asyncio.sleep(30), 0.01)


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def raise_unprintable() -> None:
    raise UnprintableError


def return_generator() -> object:
    return (i for i in range(3))


def return_lock() -> object:
    return threading.Lock()


def return_deep_list(depth: int = 50_000) -> list[object]:
    nested: list[object] = []
    for _ in range(depth):
        nested = [nested]
    return nested


def return_tuple() -> tuple[int, int]:
    return (1, 2)
