"""The memory backend's options, and the config struct of each of its components."""

from __future__ import annotations

from omniq._configurable import Options

__all__ = [
    "MemoryEventStorageConfig",
    "MemoryOptions",
    "MemoryResultStorageConfig",
    "MemoryTaskQueueConfig",
]


class MemoryOptions(Options, frozen=True, kw_only=True):
    """Options shared by the memory components (only ``project_name``)."""


class MemoryTaskQueueConfig(MemoryOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.memory.queue.AsyncMemoryTaskQueue`."""

    queues: list[str] | None = None


class MemoryResultStorageConfig(MemoryOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.memory.storage.AsyncMemoryResultStorage`."""


class MemoryEventStorageConfig(MemoryOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.memory.storage.AsyncMemoryEventStorage`."""
