"""The SQLite backend: all three storages in one database file."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.sqlite.options import SQLiteConnection, SQLiteOptions

__all__ = ["SQLiteBackend", "SQLiteKeywords"]


class SQLiteKeywords(SQLiteConnection, BackendOptions, total=False):
    """The keywords of :class:`SQLiteBackend`."""


class SQLiteBackend(Backend):
    """Task queue, results and events in one SQLite file (``db_path``, else
    ``base_dir/omniq.db``: :class:`~omniq.backends.sqlite.options.SQLiteConnection`)."""

    name = "sqlite"
    options_class = SQLiteOptions

    def __init__(self, **options: Unpack[SQLiteKeywords]) -> None:
        super().__init__(**options)
