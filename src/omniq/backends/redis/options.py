"""The Redis backend's options, and the config struct of each of its components."""

from __future__ import annotations

from typing import TypedDict

from omniq._configurable import Options

__all__ = [
    "RedisConnection",
    "RedisOptions",
    "RedisResultStorageConfig",
    "RedisTaskQueueConfig",
]


class RedisConnection(TypedDict, total=False):
    """``url``: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``;
    default ``redis://127.0.0.1:6379/0``), whose parts host/port/db/username/password override;
    ``max_connections``: size limit of the pool (default: redis-py's, 100);
    ``socket_timeout``, ``socket_connect_timeout``: seconds (default: none / redis-py's)."""

    url: str | None
    host: str | None
    port: int | None
    db: int | None
    username: str | None
    password: str | None
    max_connections: int | None
    socket_timeout: float | None
    socket_connect_timeout: float | None


class RedisOptions(Options, frozen=True, kw_only=True):
    """The connection (see :class:`RedisConnection`) and ``project_name``."""

    url: str = "redis://127.0.0.1:6379/0"
    host: str | None = None
    port: int | None = None
    db: int | None = None
    username: str | None = None
    password: str | None = None
    max_connections: int | None = None
    socket_timeout: float | None = None
    socket_connect_timeout: float | None = None


class RedisTaskQueueConfig(RedisOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.redis.queue.AsyncRedisTaskQueue`."""

    queues: list[str] | None = None


class RedisResultStorageConfig(RedisOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.redis.storage.AsyncRedisResultStorage`."""
