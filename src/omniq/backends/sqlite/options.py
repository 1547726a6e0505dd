"""The SQLite backend's options, and the config struct of each of its components."""

from __future__ import annotations

from omniq._configurable import Options

__all__ = [
    "SQLiteEventStorageConfig",
    "SQLiteOptions",
    "SQLiteResultStorageConfig",
    "SQLiteTaskQueueConfig",
]


class SQLiteOptions(Options, frozen=True, kw_only=True):
    """The database file: ``db_path``, else ``{base_dir}/omniq.db`` (``base_dir`` None:
    ``Settings.BASE_DIR``)."""

    base_dir: str | None = None
    db_path: str | None = None


class SQLiteTaskQueueConfig(SQLiteOptions, frozen=True, kw_only=True):
    queues: list[str] | None = None


class SQLiteResultStorageConfig(SQLiteOptions, frozen=True, kw_only=True):
    pass


class SQLiteEventStorageConfig(SQLiteOptions, frozen=True, kw_only=True):
    pass
