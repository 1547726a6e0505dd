"""Result and event storages: one module per backend, each with an ``Async*`` core and its
sync twin."""

from omniq.storage.base import AsyncEventStorage, AsyncResultStorage
from omniq.storage.file import (
    AsyncFileEventStorage,
    AsyncFileResultStorage,
    FileEventStorage,
    FileResultStorage,
)
from omniq.storage.memory import (
    AsyncMemoryEventStorage,
    AsyncMemoryResultStorage,
    MemoryEventStorage,
    MemoryResultStorage,
)
from omniq.storage.nats import AsyncNATSResultStorage, NATSResultStorage
from omniq.storage.postgres import (
    AsyncPostgresEventStorage,
    AsyncPostgresResultStorage,
    PostgresEventStorage,
    PostgresResultStorage,
)
from omniq.storage.redis import AsyncRedisResultStorage, RedisResultStorage
from omniq.storage.sqlite import (
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
