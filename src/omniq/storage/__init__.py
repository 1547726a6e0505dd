"""Result and event storages: the contracts (:mod:`omniq.storage.base`) and each backend's
storages, ``Async*`` cores with their sync twins, loaded from :mod:`omniq.backends` when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq._lazy import lazy_exports
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

if TYPE_CHECKING:
    from omniq.backends.file._twins import FileEventStorage, FileResultStorage
    from omniq.backends.file.storage import AsyncFileEventStorage, AsyncFileResultStorage
    from omniq.backends.memory._twins import MemoryEventStorage, MemoryResultStorage
    from omniq.backends.memory.storage import AsyncMemoryEventStorage, AsyncMemoryResultStorage
    from omniq.backends.nats._twins import NATSResultStorage
    from omniq.backends.nats.storage import AsyncNATSResultStorage
    from omniq.backends.postgres._twins import PostgresEventStorage, PostgresResultStorage
    from omniq.backends.postgres.storage import (
        AsyncPostgresEventStorage,
        AsyncPostgresResultStorage,
    )
    from omniq.backends.redis._twins import RedisResultStorage
    from omniq.backends.redis.storage import AsyncRedisResultStorage
    from omniq.backends.sqlite._twins import SQLiteEventStorage, SQLiteResultStorage
    from omniq.backends.sqlite.storage import AsyncSQLiteEventStorage, AsyncSQLiteResultStorage

__all__ = [
    "AsyncEventStorage",
    "AsyncFileEventStorage",
    "AsyncFileResultStorage",
    "AsyncMemoryEventStorage",
    "AsyncMemoryResultStorage",
    "AsyncNATSResultStorage",
    "AsyncPostgresEventStorage",
    "AsyncPostgresResultStorage",
    "AsyncRedisResultStorage",
    "AsyncResultStorage",
    "AsyncSQLiteEventStorage",
    "AsyncSQLiteResultStorage",
    "FileEventStorage",
    "FileResultStorage",
    "MemoryEventStorage",
    "MemoryResultStorage",
    "NATSResultStorage",
    "PostgresEventStorage",
    "PostgresResultStorage",
    "RedisResultStorage",
    "SQLiteEventStorage",
    "SQLiteResultStorage",
]

_WHERE = {
    "AsyncMemoryResultStorage": "omniq.backends.memory.storage",
    "MemoryResultStorage": "omniq.backends.memory._twins",
    "AsyncMemoryEventStorage": "omniq.backends.memory.storage",
    "MemoryEventStorage": "omniq.backends.memory._twins",
    "AsyncFileResultStorage": "omniq.backends.file.storage",
    "FileResultStorage": "omniq.backends.file._twins",
    "AsyncFileEventStorage": "omniq.backends.file.storage",
    "FileEventStorage": "omniq.backends.file._twins",
    "AsyncSQLiteResultStorage": "omniq.backends.sqlite.storage",
    "SQLiteResultStorage": "omniq.backends.sqlite._twins",
    "AsyncSQLiteEventStorage": "omniq.backends.sqlite.storage",
    "SQLiteEventStorage": "omniq.backends.sqlite._twins",
    "AsyncPostgresResultStorage": "omniq.backends.postgres.storage",
    "PostgresResultStorage": "omniq.backends.postgres._twins",
    "AsyncPostgresEventStorage": "omniq.backends.postgres.storage",
    "PostgresEventStorage": "omniq.backends.postgres._twins",
    "AsyncRedisResultStorage": "omniq.backends.redis.storage",
    "RedisResultStorage": "omniq.backends.redis._twins",
    "AsyncNATSResultStorage": "omniq.backends.nats.storage",
    "NATSResultStorage": "omniq.backends.nats._twins",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
