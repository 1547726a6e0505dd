"""A backend: one set of connection arguments that builds all three storages of one kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, TypeVar

from omniq._configurable import Options, validate_options
from omniq._redact import redact_value
from omniq.errors import ConfigError
from omniq.registry import backend_entry, load

if TYPE_CHECKING:
    from omniq.config import Settings

__all__ = ["Backend", "BackendOptions", "component_class", "implementation"]

C = TypeVar("C")

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


def implementation(cls: type[Any], kind: str, *, field: str) -> tuple[str, type[Any]]:
    """Which component ``cls`` is and the class to build for the backend type ``kind``: ``cls``
    itself when it is that backend's class (or a subclass of it), the backend's class when
    ``cls`` is a contract it implements; anything else is a ConfigError."""
    entry = backend_entry(kind, field=field)
    for component in _COMPONENTS:
        if getattr(entry, component) is None:
            continue
        found = component_class(kind, component, field=field)
        if issubclass(cls, found):
            return component, cls
        if issubclass(found, cls):
            return component, found
    raise ConfigError(f"{field}: {cls.__name__} is not a component of the {kind} backend")


class BackendOptions(TypedDict, total=False):
    """The keywords every backend takes besides its connection's: each backend's keywords are
    these and its ``<Name>Connection`` (``backends/<name>/options.py``)."""

    project_name: str | None
    settings: Settings | None


class Backend:
    """Builds a backend's task queue, result storage and event storage from shared arguments.

    Each component is created on demand (``backend.task_queue(queues=[...])``); the arguments are
    validated against the component's options when it is built. These methods build the async
    components; ``SQLiteTaskQueue.from_backend(b)`` or ``TaskQueue.from_backend(b)`` the sync ones.
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

    def build(self, cls: type[C], **overrides: Any) -> C:
        """A new component of this backend of class ``cls`` (this backend's async class of a
        component, or the contract it implements), ``overrides`` replacing the backend's options.

        A task queue gets an event storage of its own on this backend (closed with it), so that
        every task stored through it gets its ENQUEUED event; not when the caller chose
        ``event_store=`` (None: no events)."""
        component, target = implementation(cls, self.name, field=type(self).__name__)
        options = {**self.options, **overrides}
        if component != "task_queue":
            options.pop("queues", None)
        where = f"{type(self).__name__}.{component}"
        built = target(**validate_options(target, options, where=where))
        own_events = self.has_event_store and self.queue_records_events
        if component == "task_queue" and "event_store" not in overrides and own_events:
            built.use_event_store(self.event_store(), owned=True)
        return built  # type: ignore[no-any-return]

    def task_queue(self, **overrides: Any) -> Any:
        """A new async task queue on this backend (``queues=[...]`` and other overrides)."""
        return self.build(component_class(self.name, "task_queue"), **overrides)

    def result_store(self, **overrides: Any) -> Any:
        """A new async result storage on this backend."""
        return self.build(component_class(self.name, "result_store"), **overrides)

    def event_store(self, **overrides: Any) -> Any:
        """A new async event storage on this backend."""
        return self.build(component_class(self.name, "event_store"), **overrides)

    def __repr__(self) -> str:
        shown = {k: redact_value(k, v) for k, v in self.options.items()}
        return f"{type(self).__name__}({shown})"
