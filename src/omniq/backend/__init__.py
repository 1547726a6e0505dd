"""Backends: build a task queue, result storage and event storage of one kind from one set of
connection arguments (:class:`Backend`); each backend's class loads from :mod:`omniq.backends`
when used, so server drivers are imported only then."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq._lazy import lazy_exports
from omniq.backend.base import Backend

if TYPE_CHECKING:
    from omniq.backends.file.backend import FileBackend
    from omniq.backends.memory.backend import MemoryBackend
    from omniq.backends.nats.backend import NATSBackend
    from omniq.backends.postgres.backend import PostgresBackend
    from omniq.backends.redis.backend import RedisBackend
    from omniq.backends.sqlite.backend import SQLiteBackend

__all__ = [
    "Backend",
    "FileBackend",
    "MemoryBackend",
    "NATSBackend",
    "PostgresBackend",
    "RedisBackend",
    "SQLiteBackend",
]

_WHERE = {
    "MemoryBackend": "omniq.backends.memory.backend",
    "FileBackend": "omniq.backends.file.backend",
    "SQLiteBackend": "omniq.backends.sqlite.backend",
    "PostgresBackend": "omniq.backends.postgres.backend",
    "RedisBackend": "omniq.backends.redis.backend",
    "NATSBackend": "omniq.backends.nats.backend",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
