"""Where each backend and worker type lives: the one place a new one plugs in.

Each built-in backend is one package, ``omniq/backends/<name>/``, whose ``__init__`` holds its
``ENTRY``: the import paths of its components (loaded only when used, so a backend's driver is
imported only when its type is asked for) and the URL schemes it serves. Third-party packages add
backends through the ``omniq.backends`` entry-point group: each entry point loads a
:class:`BackendEntry`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from omniq.errors import ConfigError, MissingDependencyError

__all__ = [
    "WORKERS",
    "BackendEntry",
    "backend_entry",
    "backends",
    "builtin_entry",
    "load",
    "register_backend",
    "suggest",
    "url_entry",
    "worker_class",
]


@dataclass(frozen=True)
class BackendEntry:
    """One backend type: import paths of its components (``None``: it has no such component),
    the pip extra that brings its driver, and the URL schemes it serves.

    ``url_options(url, field)`` turns a URL of one of ``schemes`` into ``(backend name, component
    keyword arguments)``; the name may be another backend's (``memory://name`` is a directory of
    the file backend).
    """

    name: str
    task_queue: str | None
    result_store: str | None
    event_store: str | None
    backend: str | None
    extra: str | None = None
    schemes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    url_options: Callable[[str, str], tuple[str, dict[str, Any]]] | None = None


def builtin_entry(
    name: str,
    title: str,
    *,
    events: bool,
    extra: str | None = None,
    schemes: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    url_options: Callable[[str, str], tuple[str, dict[str, Any]]] | None = None,
) -> BackendEntry:
    """The entry of a backend laid out as ``omniq/backends/<name>/`` (queue.py, storage.py,
    backend.py) with classes named ``Async<title>TaskQueue`` and so on."""
    package = f"omniq.backends.{name}"
    return BackendEntry(
        name=name,
        task_queue=f"{package}.queue:Async{title}TaskQueue",
        result_store=f"{package}.storage:Async{title}ResultStorage",
        event_store=f"{package}.storage:Async{title}EventStorage" if events else None,
        backend=f"{package}.backend:{title}Backend",
        extra=extra,
        schemes=schemes,
        aliases=aliases,
        url_options=url_options,
    )


#: The built-in backends: each package's ``ENTRY`` (light modules: no driver is imported).
_BUILTIN = ("memory", "file", "sqlite", "postgres", "redis", "nats")
BACKENDS: dict[str, BackendEntry] = {}

WORKERS: dict[str, str] = {
    "async": "omniq.workers.async_worker:AsyncWorker",
    "thread_pool": "omniq.workers.thread_pool:AsyncThreadPoolWorker",
    "thread": "omniq.workers.thread_pool:AsyncThreadPoolWorker",
    "process_pool": "omniq.workers.process_pool:AsyncProcessPoolWorker",
    "process": "omniq.workers.process_pool:AsyncProcessPoolWorker",
    "gevent": "omniq.workers.gevent_pool:AsyncGeventWorker",
}

_loaded = False


def register_backend(entry: BackendEntry) -> None:
    """Add (or replace) a backend type."""
    _load_entries()
    BACKENDS[entry.name] = entry


def backends() -> dict[str, BackendEntry]:
    """Every backend type by name: the built-in ones and those of installed plugins."""
    _load_entries()
    return BACKENDS


def _load_entries() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _BUILTIN:
        entry = importlib.import_module(f"omniq.backends.{name}").ENTRY
        BACKENDS.setdefault(entry.name, entry)
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
    _load_entries()
    key = name
    if isinstance(name, str) and name not in BACKENDS:
        key = next((e.name for e in BACKENDS.values() if name in e.aliases), name)
    if key not in BACKENDS:
        allowed = sorted(BACKENDS)
        hint = suggest(str(name), allowed)
        raise ConfigError(f"{field}: unknown backend type {name!r}{hint}; allowed: {allowed}")
    return BACKENDS[key]


def url_entry(scheme: str) -> BackendEntry | None:
    """The backend serving a URL scheme, or None."""
    _load_entries()
    return next((e for e in BACKENDS.values() if scheme in e.schemes), None)


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
