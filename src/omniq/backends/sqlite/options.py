"""The SQLite backend's options, and the config struct of each of its components."""

from __future__ import annotations

import os
from typing import TypedDict

from omniq._configurable import Options

__all__ = [
    "SQLiteConnection",
    "SQLiteEventStorageConfig",
    "SQLiteOptions",
    "SQLiteResultStorageConfig",
    "SQLiteTaskQueueConfig",
]


class SQLiteConnection(TypedDict, total=False):
    """``db_path``: the database file; else ``base_dir``: the directory of ``omniq.db`` (default
    ``Settings.BASE_DIR``), created on use."""

    base_dir: str | os.PathLike[str] | None
    db_path: str | os.PathLike[str] | None


class SQLiteOptions(Options, frozen=True, kw_only=True):
    """The database file: ``db_path``, else ``{base_dir}/omniq.db`` (``base_dir`` None:
    ``Settings.BASE_DIR``)."""

    base_dir: str | None = None
    db_path: str | None = None


class SQLiteTaskQueueConfig(SQLiteOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.sqlite.queue.AsyncSQLiteTaskQueue`."""

    queues: list[str] | None = None


class SQLiteResultStorageConfig(SQLiteOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.sqlite.storage.AsyncSQLiteResultStorage`."""


class SQLiteEventStorageConfig(SQLiteOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.sqlite.storage.AsyncSQLiteEventStorage`."""
