"""The file backend's options, and the config struct of each of its components."""

from __future__ import annotations

from typing import Any

from omniq._configurable import Options

__all__ = [
    "FileEventStorageConfig",
    "FileOptions",
    "FileResultStorageConfig",
    "FileTaskQueueConfig",
]


class FileOptions(Options, frozen=True, kw_only=True):
    """Where the files live: ``base_dir`` (a path or an fsspec URL; None: ``Settings.BASE_DIR``)
    and fsspec's ``storage_options``."""

    base_dir: str | None = None
    storage_options: dict[str, Any] = {}


class FileTaskQueueConfig(FileOptions, frozen=True, kw_only=True):
    queues: list[str] | None = None


class FileResultStorageConfig(FileOptions, frozen=True, kw_only=True):
    pass


class FileEventStorageConfig(FileOptions, frozen=True, kw_only=True):
    pass
