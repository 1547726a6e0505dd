"""What the SQLite task queue, result storage and event storage share.

- :mod:`.connection`: a thread per connection (``Runner``), PRAGMAs, schema set-up,
  write transactions, retries on ``SQLITE_BUSY``.
- ``schema.sql`` (tables and indexes, documented at its top) and ``queries.sql`` (every
  statement), read by :mod:`.sql`.
- :mod:`.codec`: rows to records and back.

Each component opens its own connection; the three may share one database file or use several.
"""

from __future__ import annotations

import os
from typing import Any

from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.registry import builtin_entry

__all__ = ["ENTRY", "database_path"]

DB_FILENAME = "omniq.db"
PathArg = str | os.PathLike[str]


def database_path(
    settings: Settings, *, db_path: PathArg | None = None, base_dir: PathArg | None = None
) -> str:
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


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    """``sqlite:///rel.db`` is relative to the working directory; ``sqlite:////abs.db`` (or
    ``sqlite:///abs.db`` with a leading slash after the scheme's three) is absolute."""
    path = url.split("://", 1)[1]
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ConfigError(
            f"{field}: {url!r}: give a database file (sqlite:///path/omniq.db); "
            "in-memory SQLite cannot be shared between components"
        )
    return "sqlite", {"db_path": path}


ENTRY = builtin_entry(
    "sqlite", "SQLite", events=True, schemes=("sqlite",), url_options=_url_options
)
