"""What the file backend's queue, result and event stores share: an fsspec location reduced to a
few atomic operations (:mod:`.store`), the task-file names and records (:mod:`.layout`), and the
blocking task-queue engine (:mod:`.core` finds and moves tasks, :mod:`.leases` claims and
leases them, :mod:`.taskdir` inserts, lists and purges, :mod:`.records` keeps the versioned
records of schedules and heartbeats)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from omniq._file.records import RecordDir
from omniq._file.store import Store, next_seq, open_store, safe_name
from omniq._file.taskdir import TaskDir

__all__ = ["RecordDir", "Store", "TaskDir", "next_seq", "open_store", "run", "safe_name"]

T = TypeVar("T")


async def run(func: Callable[..., T], *args: Any) -> T:
    """Run blocking file work in a thread: one hop per call, however many files it touches."""
    return await asyncio.to_thread(functools.partial(func, *args))
