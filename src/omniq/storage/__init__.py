"""Result and event storages: the contracts (:mod:`omniq.storage.base`) and each backend's
storages, ``Async*`` cores with their sync twins, loaded from :mod:`omniq.backends` when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq._lazy import lazy_exports
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

if TYPE_CHECKING:
    from omniq.backends.file.storage import (
        AsyncFileEventStorage,
        AsyncFileResultStorage,
        FileEventStorage,
        FileResultStorage,
    )
    from omniq.backends.memory.storage import (
        AsyncMemoryEventStorage,
        AsyncMemoryResultStorage,
        MemoryEventStorage,
        MemoryResultStorage,
    )
    from omniq.backends.nats.storage import AsyncNATSResultStorage, NATSResultStorage
    from omniq.backends.postgres.storage import (
        AsyncPostgresEventStorage,
        AsyncPostgresResultStorage,
        PostgresEventStorage,
        PostgresResultStorage,
    )
    from omniq.backends.redis.storage import AsyncRedisResultStorage, RedisResultStorage
    from omniq.backends.sqlite.storage import (
        AsyncSQLiteEventStorage,
        AsyncSQLiteResultStorage,
        SQLiteEventStorage,
        SQLiteResultStorage,
    )

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
    "MemoryResultStorage": "omniq.backends.memory.storage",
    "AsyncMemoryEventStorage": "omniq.backends.memory.storage",
    "MemoryEventStorage": "omniq.backends.memory.storage",
    "AsyncFileResultStorage": "omniq.backends.file.storage",
    "FileResultStorage": "omniq.backends.file.storage",
    "AsyncFileEventStorage": "omniq.backends.file.storage",
    "FileEventStorage": "omniq.backends.file.storage",
    "AsyncSQLiteResultStorage": "omniq.backends.sqlite.storage",
    "SQLiteResultStorage": "omniq.backends.sqlite.storage",
    "AsyncSQLiteEventStorage": "omniq.backends.sqlite.storage",
    "SQLiteEventStorage": "omniq.backends.sqlite.storage",
    "AsyncPostgresResultStorage": "omniq.backends.postgres.storage",
    "PostgresResultStorage": "omniq.backends.postgres.storage",
    "AsyncPostgresEventStorage": "omniq.backends.postgres.storage",
    "PostgresEventStorage": "omniq.backends.postgres.storage",
    "AsyncRedisResultStorage": "omniq.backends.redis.storage",
    "RedisResultStorage": "omniq.backends.redis.storage",
    "AsyncNATSResultStorage": "omniq.backends.nats.storage",
    "NATSResultStorage": "omniq.backends.nats.storage",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
