"""The backends every conformance test runs against, and how to build each one.

A spec builds the three storages for a project from plain data (an import path and keyword
arguments), so a worker subprocess can build the very same storages. Server backends add their
spec here once their tests can start the server.
"""

from __future__ import annotations

import importlib
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import msgspec

# What a corruption hook writes into a stored task's field, by raw storage access: the field
# names of omniq.models.Task, the values what a careless script or a bad migration might leave.
CORRUPT_FIELDS = ("priority", "run_at", "payload", "status", "attempts", "max_retries")
BAD_VALUES: dict[str, Any] = {
    "priority": "high",
    "run_at": "tomorrow",
    "payload": b"\xc1 not msgpack",
    "status": "bogus",
    "attempts": "many",
    "max_retries": "none",
}

Corrupt = Callable[[str, Any, str], Awaitable[None]]
"""``corrupt(project, task, field)``: write a bad value into one field of a stored task (the
task as ``get_task`` returned it: its id, queue and priority locate it)."""


@dataclass
class BackendSpec:
    name: str
    queue: str
    results: str
    events: str | None
    options: dict[str, Any] = field(default_factory=dict)
    multiprocess: bool = True  # storage shared by OS processes
    # Backends without an event storage of their own log events elsewhere (SQLite, say):
    event_options: dict[str, Any] | None = None
    corrupt: Corrupt | None = None  # None: the storage cannot be written from outside (memory)
    corruptible: tuple[str, ...] = CORRUPT_FIELDS  # the fields its storage can hold wrong

    def component_args(self, project: str) -> dict[str, Any]:
        return {"project_name": project, **self.options}

    def event_args(self, project: str) -> dict[str, Any]:
        if self.event_options is None:
            return self.component_args(project)
        return {"project_name": project, **self.event_options}

    def build(self, path: str, project: str, args: dict[str, Any] | None = None) -> Any:
        module, _, name = path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(**(args if args is not None else self.component_args(project)))

    def make_queue(self, project: str) -> Any:
        return self.build(self.queue, project)

    def make_results(self, project: str) -> Any:
        return self.build(self.results, project)

    def make_events(self, project: str) -> Any:
        return self.build(self.events, project, self.event_args(project)) if self.events else None

    def as_data(self, project: str) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "results": self.results,
            "events": self.events,
            "args": self.component_args(project),
            "event_args": self.event_args(project),
        }


def sqlite_corrupter(db_path: str) -> Corrupt:
    """An UPDATE of the column (SQLite columns take a value of any type)."""

    async def corrupt(project: str, task: Any, name: str) -> None:
        with sqlite3.connect(db_path) as db:
            changed = db.execute(
                f"UPDATE omniq_tasks SET {name} = ? WHERE project = ? AND id = ?",
                (BAD_VALUES[name], project, task.id),
            ).rowcount
        assert changed == 1, f"no task {task.id} in {db_path}"

    return corrupt


def file_corrupter(base_dir: str, storage_options: dict[str, Any] | None = None) -> Corrupt:
    """A rewrite of the task's file with one field of the task changed."""

    async def corrupt(project: str, task: Any, name: str) -> None:
        fs, root = fsspec.core.url_to_fs(base_dir, **(storage_options or {}))
        found = [p for p in fs.find(f"{root}/{project}") if p.endswith(f".{task.id}")]
        assert len(found) == 1, f"task file of {task.id}: {found}"
        seq, task = msgspec.msgpack.decode(fs.cat_file(found[0]))
        task[name] = BAD_VALUES[name]
        fs.pipe_file(found[0], msgspec.msgpack.encode([seq, task]))

    return corrupt


def backend_spec(
    name: str,
    stem: str,
    options: dict[str, Any] | None = None,
    *,
    package: str | None = None,
    events_db: Path | None = None,
    **more: Any,
) -> BackendSpec:
    """The spec of the backend in ``omniq.backends.<package>`` (by default ``<name>``), whose
    components are ``Async<stem>TaskQueue``, ``Async<stem>ResultStorage`` and
    ``Async<stem>EventStorage``; a backend with no event storage of its own logs events to SQLite
    at ``events_db``."""
    base = f"omniq.backends.{package or name}"
    events, event_options = f"{base}.storage:Async{stem}EventStorage", None
    if events_db is not None:
        events = "omniq.backends.sqlite.storage:AsyncSQLiteEventStorage"
        event_options = {"db_path": str(events_db)}
    return BackendSpec(
        name,
        f"{base}.queue:Async{stem}TaskQueue",
        f"{base}.storage:Async{stem}ResultStorage",
        events,
        options or {},
        event_options=event_options,
        **more,
    )


def embedded_specs(tmp: Path) -> dict[str, BackendSpec]:
    """Backends that need no server."""
    db, files = str(tmp / "omniq.db"), str(tmp / "files")
    memfs = f"memory://omniq-{uuid.uuid4().hex}"
    return {
        "memory": backend_spec("memory", "Memory", multiprocess=False),
        "sqlite": backend_spec("sqlite", "SQLite", {"db_path": db}, corrupt=sqlite_corrupter(db)),
        "file": backend_spec("file", "File", {"base_dir": files}, corrupt=file_corrupter(files)),
        "file-memfs": backend_spec(
            "file-memfs",
            "File",
            {"base_dir": memfs},
            package="file",
            multiprocess=False,
            corrupt=file_corrupter(memfs),
        ),
    }


EMBEDDED = ["memory", "sqlite", "file", "file-memfs"]
