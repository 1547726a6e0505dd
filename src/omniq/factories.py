"""``TaskQueue``, ``ResultStore``, ``EventStore``: the sync component of a backend or a URL,
whatever its backend (``omniq.queue`` etc. hold the classes themselves).

``TaskQueue.from_backend(b)`` is the same as ``SQLiteTaskQueue.from_backend(b)`` for a SQLite
backend: the sync twin of that backend's task queue. Every sync task queue is an instance of
``TaskQueue`` (``isinstance``), every sync result storage of ``ResultStore``, and so on.
"""

from __future__ import annotations

from typing import Any

from omniq import _sync
from omniq._sync import SyncTwin
from omniq.backend.base import Backend, component_class
from omniq.errors import ConfigError
from omniq.queue.base import AsyncTaskQueue
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage
from omniq.urls import parse_url

__all__ = ["EventStore", "ResultStore", "TaskQueue", "sync_twin_of"]


def sync_twin_of(async_cls: type[Any]) -> type[Any]:
    """The sync twin of an ``Async*`` class."""
    twin = _sync.twin_of(async_cls)
    if twin is None:
        raise ConfigError(f"{async_cls.__name__} has no sync twin")
    return twin


class _Kind(type):
    """Makes ``isinstance(x, TaskQueue)`` true of the sync twin of every task queue."""

    contract: type[Any]

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls.__subclasscheck__(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        if type.__subclasscheck__(cls, subclass):
            return True
        twin_of = getattr(subclass, "_async_class", None)
        return (
            issubclass(subclass, SyncTwin)
            and twin_of is not None
            and issubclass(twin_of, cls.contract)
        )


class _Factory(metaclass=_Kind):
    component: str

    @classmethod
    def from_backend(cls, backend: Backend, **options: Any) -> Any:
        """This component of ``backend`` (sync twin), with ``options`` overriding its arguments."""
        twin = sync_twin_of(component_class(backend.name, cls.component))
        return twin.from_backend(backend, **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Any:
        """The component for a storage URL (``sqlite:///omniq.db``, ``redis://...``)."""
        kind, _ = parse_url(url)
        field = f"{cls.__name__}.from_url"
        return sync_twin_of(component_class(kind, cls.component, field=field)).from_url(
            url, **options
        )


class TaskQueue(_Factory):
    """Build a sync task queue: ``TaskQueue.from_backend(b, queues=["high", "low"])``."""

    component = "task_queue"
    contract = AsyncTaskQueue


class ResultStore(_Factory):
    """Build a sync result storage: ``ResultStore.from_backend(b)``."""

    component = "result_store"
    contract = AsyncResultStorage


class EventStore(_Factory):
    """Build a sync event storage: ``EventStore.from_backend(b)``."""

    component = "event_store"
    contract = AsyncEventStorage
