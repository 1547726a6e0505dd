"""Task queues: the contract (:mod:`omniq.queue.base`) and each backend's queue, an ``Async*``
core with its sync twin. The backends live in :mod:`omniq.backends` and load when first used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq._lazy import lazy_exports
from omniq.queue.base import AsyncTaskQueue

if TYPE_CHECKING:
    from omniq.backends.file._twins import FileTaskQueue
    from omniq.backends.file.queue import AsyncFileTaskQueue
    from omniq.backends.memory._twins import MemoryTaskQueue
    from omniq.backends.memory.queue import AsyncMemoryTaskQueue
    from omniq.backends.nats._twins import NATSTaskQueue
    from omniq.backends.nats.queue import AsyncNATSTaskQueue
    from omniq.backends.postgres._twins import PostgresTaskQueue
    from omniq.backends.postgres.queue import AsyncPostgresTaskQueue
    from omniq.backends.redis._twins import RedisTaskQueue
    from omniq.backends.redis.queue import AsyncRedisTaskQueue
    from omniq.backends.sqlite._twins import SQLiteTaskQueue
    from omniq.backends.sqlite.queue import AsyncSQLiteTaskQueue

__all__ = [
    "AsyncFileTaskQueue",
    "AsyncMemoryTaskQueue",
    "AsyncNATSTaskQueue",
    "AsyncPostgresTaskQueue",
    "AsyncRedisTaskQueue",
    "AsyncSQLiteTaskQueue",
    "AsyncTaskQueue",
    "FileTaskQueue",
    "MemoryTaskQueue",
    "NATSTaskQueue",
    "PostgresTaskQueue",
    "RedisTaskQueue",
    "SQLiteTaskQueue",
]

_WHERE = {
    "AsyncMemoryTaskQueue": "omniq.backends.memory.queue",
    "MemoryTaskQueue": "omniq.backends.memory._twins",
    "AsyncFileTaskQueue": "omniq.backends.file.queue",
    "FileTaskQueue": "omniq.backends.file._twins",
    "AsyncSQLiteTaskQueue": "omniq.backends.sqlite.queue",
    "SQLiteTaskQueue": "omniq.backends.sqlite._twins",
    "AsyncPostgresTaskQueue": "omniq.backends.postgres.queue",
    "PostgresTaskQueue": "omniq.backends.postgres._twins",
    "AsyncRedisTaskQueue": "omniq.backends.redis.queue",
    "RedisTaskQueue": "omniq.backends.redis._twins",
    "AsyncNATSTaskQueue": "omniq.backends.nats.queue",
    "NATSTaskQueue": "omniq.backends.nats._twins",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
