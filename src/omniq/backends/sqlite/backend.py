"""The SQLite backend: all three storages in one database file."""

from __future__ import annotations

import os

from omniq.backend.base import Backend
from omniq.backends.sqlite.options import SQLiteOptions
from omniq.config import Settings

__all__ = ["SQLiteBackend"]


class SQLiteBackend(Backend):
    """Task queue, results and events in one SQLite file (``db_path``, else
    ``base_dir/omniq.db``)."""

    name = "sqlite"
    options_class = SQLiteOptions

    def __init__(
        self,
        *,
        project_name: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        db_path: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            project_name=project_name, base_dir=base_dir, db_path=db_path, settings=settings
        )
