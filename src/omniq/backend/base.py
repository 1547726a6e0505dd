"""A backend: one set of connection arguments that builds all three storages of one kind."""

from __future__ import annotations

from typing import Any, ClassVar

from omniq._configurable import Options, validate_options
from omniq._redact import redact_value
from omniq.errors import ConfigError
from omniq.registry import backend_entry, load

__all__ = ["Backend", "component_class"]

_COMPONENTS = {
    "task_queue": "task queue",
    "result_store": "result storage",
    "event_store": "event storage",
}


def component_class(kind: str, component: str, *, field: str | None = None) -> type[Any]:
    """The async class of one component (``task_queue``, ``result_store``, ``event_store``) of
    the backend type ``kind``."""
    entry = backend_entry(kind, field=field or f"{component}.type")
    path = getattr(entry, component)
    if path is None:
        raise ConfigError(
            f"{field or component}: the {kind} backend has no {_COMPONENTS[component]}; "
            "use another backend for it (SQLite, PostgreSQL or files, say)"
        )
    return load(path, what=f"the {kind} {_COMPONENTS[component]}", extra=entry.extra)


class Backend:
    """Builds a backend's task queue, result storage and event storage from shared arguments.

    Each component is created on demand (``backend.task_queue(queues=[...])``); the arguments are
    validated against the component's options when it is built.
    """

    name: ClassVar[str]
    #: The backend's options (``backends/<name>/options.py``): the keywords it takes.
    options_class: ClassVar[type[Options]]
    # Whether a task queue it builds records ENQUEUED in an event storage of its own; not where
    # each component keeps its own memory (nobody could read those events).
    queue_records_events: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options_class.__struct_fields__) - {"settings"})
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword {unknown[0]!r}")
        self.options = {k: v for k, v in options.items() if v is not None}
        component_class(self.name, "task_queue")  # fail now if the driver is missing

    @property
    def has_event_store(self) -> bool:
        return backend_entry(self.name).event_store is not None

    def component_options(
        self, component: str, overrides: dict[str, Any]
    ) -> tuple[type[Any], dict[str, Any]]:
        """The async class and validated options of one component."""
        cls = component_class(self.name, component)
        options = {**self.options, **overrides}
        if component != "task_queue":
            options.pop("queues", None)
        return cls, validate_options(cls, options, where=f"{type(self).__name__}.{component}")

    def task_queue(self, **overrides: Any) -> Any:
        """A new async task queue on this backend (``queues=[...]`` and other overrides)."""
        cls, options = self.component_options("task_queue", overrides)
        return self.wire_events(cls(**options), overrides, self.event_store)

    def wire_events(self, queue: Any, overrides: dict[str, Any], make_store: Any) -> Any:
        """Give a task queue this backend built an event storage of its own (``make_store()``,
        closed with the queue), so that every task stored through it gets its ENQUEUED event;
        not when the caller chose ``event_store=`` (None: no events)."""
        if "event_store" not in overrides and self.has_event_store and self.queue_records_events:
            queue.use_event_store(make_store(), owned=True)
        return queue

    def result_store(self, **overrides: Any) -> Any:
        """A new async result storage on this backend."""
        cls, options = self.component_options("result_store", overrides)
        return cls(**options)

    def event_store(self, **overrides: Any) -> Any:
        """A new async event storage on this backend."""
        cls, options = self.component_options("event_store", overrides)
        return cls(**options)

    def __repr__(self) -> str:
        shown = {k: redact_value(k, v) for k, v in self.options.items()}
        return f"{type(self).__name__}({shown})"
