"""Task queues: the contract (:mod:`omniq.queue.base`) and each backend's queue, an ``Async*``
core with its sync twin. The backends live in :mod:`omniq.backends` and load when first used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq._lazy import lazy_exports
from omniq.queue.base import AsyncTaskQueue

if TYPE_CHECKING:
    from omniq.backends.file.queue import AsyncFileTaskQueue, FileTaskQueue
    from omniq.backends.memory.queue import AsyncMemoryTaskQueue, MemoryTaskQueue
    from omniq.backends.nats.queue import AsyncNATSTaskQueue, NATSTaskQueue
    from omniq.backends.postgres.queue import AsyncPostgresTaskQueue, PostgresTaskQueue
    from omniq.backends.redis.queue import AsyncRedisTaskQueue, RedisTaskQueue
    from omniq.backends.sqlite.queue import AsyncSQLiteTaskQueue, SQLiteTaskQueue

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
    "MemoryTaskQueue": "omniq.backends.memory.queue",
    "AsyncFileTaskQueue": "omniq.backends.file.queue",
    "FileTaskQueue": "omniq.backends.file.queue",
    "AsyncSQLiteTaskQueue": "omniq.backends.sqlite.queue",
    "SQLiteTaskQueue": "omniq.backends.sqlite.queue",
    "AsyncPostgresTaskQueue": "omniq.backends.postgres.queue",
    "PostgresTaskQueue": "omniq.backends.postgres.queue",
    "AsyncRedisTaskQueue": "omniq.backends.redis.queue",
    "RedisTaskQueue": "omniq.backends.redis.queue",
    "AsyncNATSTaskQueue": "omniq.backends.nats.queue",
    "NATSTaskQueue": "omniq.backends.nats.queue",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
