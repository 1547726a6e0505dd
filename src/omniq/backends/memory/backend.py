"""The memory backend: all three storages in this process's memory."""

from __future__ import annotations

from omniq.backend.base import Backend
from omniq.backends.memory.options import MemoryOptions
from omniq.config import Settings

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """In-memory task queue, results and events (one process, nothing persisted)."""

    name = "memory"
    options_class = MemoryOptions
    queue_records_events = False

    def __init__(
        self, *, project_name: str | None = None, settings: Settings | None = None
    ) -> None:
        super().__init__(project_name=project_name, settings=settings)
