"""What the file backend's queue, result and event stores share: an fsspec location reduced to a
few atomic operations (:mod:`.store`), the task-file names and records (:mod:`.layout`), and the
blocking task-queue engine (:mod:`.core` finds and moves tasks, :mod:`.leases` claims and
leases them, :mod:`.taskdir` inserts, lists and purges, :mod:`.records` keeps the versioned
records of schedules and heartbeats)."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from omniq._permissions import modes_of
from omniq.backends.file.records import RecordDir
from omniq.backends.file.store import Store, next_seq, open_store, safe_name
from omniq.backends.file.taskdir import TaskDir
from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.registry import builtin_entry

__all__ = [
    "ENTRY",
    "RecordDir",
    "Store",
    "TaskDir",
    "component_store",
    "next_seq",
    "open_store",
    "run",
    "safe_name",
]

T = TypeVar("T")


def component_store(
    project_name: str,
    settings: Settings,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """The store of a component: the keywords of
    :class:`~omniq.backends.file.options.FileConnection` (``base_dir`` None: the setting)."""
    return open_store(
        base_dir or settings.BASE_DIR, storage_options, project_name, modes_of(settings)
    )


async def run(func: Callable[..., T], *args: Any) -> T:
    """Run blocking file work in a thread: one hop per call, however many files it touches."""
    return await asyncio.to_thread(functools.partial(func, *args))


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    """``file:///dir`` is a local directory; other schemes are fsspec locations."""
    if url.split("://", 1)[0].lower() == "file":
        path = urlsplit(url).path
        if not path:
            raise ConfigError(f"{field}: {url!r} names no directory")
        return "file", {"base_dir": path}
    return "file", {"base_dir": url}


ENTRY = builtin_entry(
    "file",
    "File",
    events=True,
    schemes=("file", "s3", "s3a", "gs", "gcs", "az", "abfs"),
    aliases=("fs", "json"),
    url_options=_url_options,
)
