"""Task functions for the promise tests (importable by worker subprocesses like taskfns)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import omniq


def fail_first_recording(path: str) -> str:
    """Append this run's wall-clock start to ``path``; the first run fails."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time()}\n".encode())
    finally:
        os.close(fd)
    if len(Path(path).read_text().split()) == 1:
        raise RuntimeError("first run fails")
    return "ok"


def stop_when_told(started: str, stopped: str, seconds: float = 30.0) -> str:
    """Mark the start, run until ``current_task().cancelled``, then mark that it was told."""
    Path(started).write_text("started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx = omniq.current_task()
        if ctx is not None and ctx.cancelled:
            Path(stopped).write_text("told to stop")
            return "stopped"
        time.sleep(0.01)
    return "never told"
