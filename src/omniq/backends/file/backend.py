"""The file backend: all three storages under one fsspec directory."""

from __future__ import annotations

import os
from typing import Any

from omniq.backend.base import Backend
from omniq.backends.file.options import FileOptions
from omniq.config import Settings

__all__ = ["FileBackend"]


class FileBackend(Backend):
    """Task queue, results and JSON-lines events under ``base_dir`` (a path or an fsspec URL
    such as ``memory://x`` or ``s3://bucket/prefix`` with ``storage_options``)."""

    name = "file"
    options_class = FileOptions

    def __init__(
        self,
        *,
        project_name: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        storage_options: dict[str, Any] | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            project_name=project_name,
            base_dir=base_dir,
            storage_options=storage_options,
            settings=settings,
        )
