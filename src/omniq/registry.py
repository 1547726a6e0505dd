"""Where each backend and worker type lives: the one place a new one plugs in.

Entries are import paths, loaded only when used, so a backend's driver is imported only when its
type is asked for. Third-party packages add backends through the ``omniq.backends`` entry-point
group: each entry point loads a :class:`BackendEntry`.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from omniq.errors import ConfigError, MissingDependencyError

__all__ = [
    "BACKENDS",
    "WORKERS",
    "BackendEntry",
    "backend_entry",
    "load",
    "register_backend",
    "suggest",
    "worker_class",
]


@dataclass(frozen=True)
class BackendEntry:
    """Import paths of one backend's components (``None``: the backend has no such component)."""

    name: str
    task_queue: str | None
    result_store: str | None
    event_store: str | None
    backend: str | None
    extra: str | None = None  # the pip extra that brings its driver


def _entry(
    name: str, module: str, title: str, *, events: bool, extra: str | None = None
) -> BackendEntry:
    return BackendEntry(
        name=name,
        task_queue=f"omniq.queue.{module}:Async{title}TaskQueue",
        result_store=f"omniq.storage.{module}:Async{title}ResultStorage",
        event_store=f"omniq.storage.{module}:Async{title}EventStorage" if events else None,
        backend=f"omniq.backend.{module}:{title}Backend",
        extra=extra,
    )


BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        _entry("memory", "memory", "Memory", events=True),
        _entry("file", "file", "File", events=True),
        _entry("sqlite", "sqlite", "SQLite", events=True),
        _entry("postgres", "postgres", "Postgres", events=True, extra="postgres"),
        _entry("redis", "redis", "Redis", events=False, extra="redis"),
        _entry("nats", "nats", "NATS", events=False, extra="nats"),
    )
}
_ALIASES = {"postgresql": "postgres", "fs": "file", "json": "file"}

WORKERS: dict[str, str] = {
    "async": "omniq.workers.async_worker:AsyncWorker",
    "thread_pool": "omniq.workers.thread_pool:AsyncThreadPoolWorker",
    "thread": "omniq.workers.thread_pool:AsyncThreadPoolWorker",
    "process_pool": "omniq.workers.process_pool:AsyncProcessPoolWorker",
    "process": "omniq.workers.process_pool:AsyncProcessPoolWorker",
    "gevent": "omniq.workers.gevent_pool:AsyncGeventWorker",
}

_plugins_loaded = False


def register_backend(entry: BackendEntry) -> None:
    """Add (or replace) a backend type."""
    BACKENDS[entry.name] = entry


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group="omniq.backends"):
        entry = point.load()
        if isinstance(entry, BackendEntry):
            register_backend(entry)


def suggest(value: str, allowed: list[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else an empty string."""
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def backend_entry(name: str, *, field: str = "type") -> BackendEntry:
    """The backend registered under ``name``; a clear error naming the allowed types if none."""
    _load_plugins()
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in BACKENDS:
        allowed = sorted(BACKENDS)
        hint = suggest(str(name), allowed)
        raise ConfigError(f"{field}: unknown backend type {name!r}{hint}; allowed: {allowed}")
    return BACKENDS[key]


def worker_class(name: str, *, field: str = "worker.type") -> type[Any]:
    """The async worker class of a worker type name."""
    if name not in WORKERS:
        allowed = sorted(WORKERS)
        hint = suggest(name, allowed)
        raise ConfigError(f"{field}: unknown worker type {name!r}{hint}; allowed: {allowed}")
    return load(WORKERS[name], what=f"worker type {name!r}")


def load(path: str, *, what: str, extra: str | None = None) -> Any:
    """Import ``"package.module:Name"``; a missing driver names the extra to install."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"{what} is not available in this version of OmniQ") from exc
        if extra:
            raise MissingDependencyError(exc.name or module_name, extra) from exc
        raise ConfigError(f"{what} needs the package {exc.name!r}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"{what} is not available in this version of OmniQ") from exc
