"""The file backend's options, and the config struct of each of its components."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypedDict

from omniq._configurable import Options

__all__ = [
    "FileConnection",
    "FileEventStorageConfig",
    "FileOptions",
    "FileResultStorageConfig",
    "FileTaskQueueConfig",
]


class FileConnection(TypedDict, total=False):
    """``base_dir``: a local path or an fsspec URL (``memory://x``, ``s3://bucket/prefix``;
    default ``Settings.BASE_DIR``), each project a directory below it; ``storage_options``:
    keyword arguments for the fsspec filesystem (credentials, endpoint)."""

    base_dir: str | os.PathLike[str] | None
    storage_options: Mapping[str, Any] | None


class FileOptions(Options, frozen=True, kw_only=True):
    """Where the files live: ``base_dir`` (a path or an fsspec URL; None: ``Settings.BASE_DIR``)
    and fsspec's ``storage_options``."""

    base_dir: str | None = None
    storage_options: dict[str, Any] = {}


class FileTaskQueueConfig(FileOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.file.queue.AsyncFileTaskQueue`."""

    queues: list[str] | None = None


class FileResultStorageConfig(FileOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.file.storage.AsyncFileResultStorage`."""


class FileEventStorageConfig(FileOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.file.storage.AsyncFileEventStorage`."""
