"""Backends: build a task queue, result storage and event storage of one kind from one set of
connection arguments. Server backends import their drivers only when used."""

from __future__ import annotations

from typing import Any

from omniq.backend.base import Backend
from omniq.backend.file import FileBackend
from omniq.backend.memory import MemoryBackend
from omniq.backend.sqlite import SQLiteBackend

__all__ = [
    "Backend",
    "FileBackend",
    "MemoryBackend",
    "NATSBackend",
    "PostgresBackend",
    "RedisBackend",
    "SQLiteBackend",
]

_LAZY = {
    "PostgresBackend": "omniq.backend.postgres",
    "RedisBackend": "omniq.backend.redis",
    "NATSBackend": "omniq.backend.nats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
