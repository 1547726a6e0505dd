"""Task queues: one module per backend, each with an ``Async*`` core and its sync twin."""

from omniq.queue.base import AsyncTaskQueue
from omniq.queue.file import AsyncFileTaskQueue, FileTaskQueue
from omniq.queue.memory import AsyncMemoryTaskQueue, MemoryTaskQueue
from omniq.queue.nats import AsyncNATSTaskQueue, NATSTaskQueue
from omniq.queue.postgres import AsyncPostgresTaskQueue, PostgresTaskQueue
from omniq.queue.redis import AsyncRedisTaskQueue, RedisTaskQueue
from omniq.queue.sqlite import AsyncSQLiteTaskQueue, SQLiteTaskQueue

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
