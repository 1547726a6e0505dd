"""The file backend: all three storages under one fsspec directory."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.file.options import FileConnection, FileOptions

__all__ = ["FileBackend", "FileKeywords"]


class FileKeywords(FileConnection, BackendOptions, total=False):
    """The keywords of :class:`FileBackend`."""


class FileBackend(Backend):
    """Task queue, results and JSON-lines events under ``base_dir`` (a path or an fsspec URL
    such as ``memory://x`` or ``s3://bucket/prefix`` with ``storage_options``:
    :class:`~omniq.backends.file.options.FileConnection`)."""

    name = "file"
    options_class = FileOptions

    def __init__(self, **options: Unpack[FileKeywords]) -> None:
        super().__init__(**options)
