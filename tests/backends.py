"""The backends every conformance test runs against, and how to build each one.

A spec builds the three storages for a project from plain data (an import path and keyword
arguments), so a worker subprocess can build the very same storages. Server backends add their
spec here once their tests can start the server.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def embedded_specs(tmp: Path) -> dict[str, BackendSpec]:
    """Backends that need no server."""
    return {
        "memory": BackendSpec(
            "memory",
            "omniq.backends.memory.queue:AsyncMemoryTaskQueue",
            "omniq.backends.memory.storage:AsyncMemoryResultStorage",
            "omniq.backends.memory.storage:AsyncMemoryEventStorage",
            multiprocess=False,
        ),
        "sqlite": BackendSpec(
            "sqlite",
            "omniq.backends.sqlite.queue:AsyncSQLiteTaskQueue",
            "omniq.backends.sqlite.storage:AsyncSQLiteResultStorage",
            "omniq.backends.sqlite.storage:AsyncSQLiteEventStorage",
            {"db_path": str(tmp / "omniq.db")},
        ),
        "file": BackendSpec(
            "file",
            "omniq.backends.file.queue:AsyncFileTaskQueue",
            "omniq.backends.file.storage:AsyncFileResultStorage",
            "omniq.backends.file.storage:AsyncFileEventStorage",
            {"base_dir": str(tmp / "files")},
        ),
        "file-memfs": BackendSpec(
            "file-memfs",
            "omniq.backends.file.queue:AsyncFileTaskQueue",
            "omniq.backends.file.storage:AsyncFileResultStorage",
            "omniq.backends.file.storage:AsyncFileEventStorage",
            {"base_dir": f"memory://omniq-{uuid.uuid4().hex}"},
            multiprocess=False,
        ),
    }


EMBEDDED = ["memory", "sqlite", "file", "file-memfs"]
