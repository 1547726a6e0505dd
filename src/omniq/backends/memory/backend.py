"""The memory backend: all three storages in this process's memory."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.memory.options import MemoryOptions

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """In-memory task queue, results and events (one process, nothing persisted)."""

    name = "memory"
    options_class = MemoryOptions
    queue_records_events = False

    def __init__(self, **options: Unpack[BackendOptions]) -> None:
        super().__init__(**options)
