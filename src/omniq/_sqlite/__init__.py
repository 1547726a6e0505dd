"""What the SQLite task queue, result storage and event storage share.

- :mod:`~omniq._sqlite.connection`: a thread per connection (``Runner``), PRAGMAs, schema set-up,
  write transactions, retries on ``SQLITE_BUSY``.
- ``schema.sql`` (tables and indexes, documented at its top) and ``queries.sql`` (every
  statement), read by :mod:`~omniq._sqlite.sql`.
- :mod:`~omniq._sqlite.codec`: rows to records and back.

Each component opens its own connection; the three may share one database file or use several.
"""

from __future__ import annotations

import os

from omniq.config import Settings
from omniq.errors import ConfigError

__all__ = ["database_path"]

DB_FILENAME = "omniq.db"
PathArg = str | os.PathLike[str]


def database_path(db_path: PathArg | None, base_dir: PathArg | None, settings: Settings) -> str:
    """The absolute path of the database file: ``db_path``, else ``{base_dir}/omniq.db``."""
    if db_path is not None:
        path = _text("db_path", db_path)
        field = "db_path"
    else:
        directory = _text("base_dir", base_dir) if base_dir is not None else settings.BASE_DIR
        if "://" in directory:
            if not directory.startswith("file://"):
                raise ConfigError(
                    f"base_dir must be a local directory for SQLite, got {directory!r} "
                    "(URLs such as s3:// are for the file backend)"
                )
            directory = directory.removeprefix("file://")
        path = os.path.join(directory, DB_FILENAME)
        field = "base_dir"
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"{field} must name a database file on disk (each connection of an in-memory "
            f"database would see its own database), got {path!r}"
        )
    return os.path.abspath(os.path.expanduser(path))


def _text(field: str, value: object) -> str:
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise ConfigError(f"{field} must be a path (str or os.PathLike), got {value!r}")
    return path
