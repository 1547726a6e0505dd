"""The PostgreSQL backend's options, and the config struct of each of its components."""

from __future__ import annotations

from typing import TypedDict

from omniq._configurable import Options

__all__ = [
    "PostgresConnection",
    "PostgresEventStorageConfig",
    "PostgresOptions",
    "PostgresResultStorageConfig",
    "PostgresTaskQueueConfig",
]


class PostgresConnection(TypedDict, total=False):
    """``dsn`` (``postgresql://user:password@host:port/database``), whose parts the keywords
    host/port/username/password/database override (what neither gives comes from the ``PG*``
    variables); ``pool_min_size``/``pool_max_size``: connections kept open / at most (default
    1 and 10; objects with the same connection share one pool per event loop)."""

    dsn: str | None
    host: str | None
    port: int | None
    username: str | None
    password: str | None
    database: str | None
    pool_min_size: int | None
    pool_max_size: int | None


class PostgresOptions(Options, frozen=True, kw_only=True):
    """The connection (see :class:`PostgresConnection`) and ``project_name``."""

    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    database: str | None = None
    pool_min_size: int | None = None
    pool_max_size: int | None = None


class PostgresTaskQueueConfig(PostgresOptions, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL task queue."""

    queues: list[str] | None = None


class PostgresResultStorageConfig(PostgresOptions, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL result storage."""


class PostgresEventStorageConfig(PostgresOptions, frozen=True, kw_only=True):
    """Configuration of a PostgreSQL event storage."""
