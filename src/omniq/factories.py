"""``TaskQueue``, ``ResultStore``, ``EventStore``: build sync components from a backend, a URL or
a dict (``omniq.queue`` etc. hold the classes themselves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omniq._sync import twin_of
from omniq.backend.base import Backend, component_class
from omniq.errors import ConfigError
from omniq.urls import parse_url

__all__ = ["EventStore", "ResultStore", "TaskQueue", "sync_twin_of"]


def sync_twin_of(async_cls: type[Any]) -> type[Any]:
    """The sync twin of an ``Async*`` class."""
    twin = twin_of(async_cls)
    if twin is None:
        raise ConfigError(f"{async_cls.__name__} has no sync twin")
    return twin


class _Factory:
    component: str

    @classmethod
    def from_backend(cls, backend: Backend, **options: Any) -> Any:
        """This component of ``backend`` (sync twin), with ``options`` overriding its arguments."""
        async_cls, validated = backend.component_options(cls.component, options)
        component = sync_twin_of(async_cls)(**validated)
        if cls.component == "task_queue":
            backend.wire_events(component, options, lambda: EventStore.from_backend(backend))
        return component

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Any:
        """The component for a storage URL (``sqlite:///omniq.db``, ``redis://...``)."""
        kind, url_options = parse_url(url)
        return cls.from_dict({"type": kind, "config": {**url_options, **options}})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The component for ``{"type": "sqlite", "config": {...}}`` (or ``{"url": ...}``)."""
        unknown = set(data) - {"type", "url", "config"}
        if unknown:
            raise ConfigError(
                f"{cls.component}: unknown key(s) {sorted(unknown)}; allowed: type, url, config"
            )
        kind, options = data.get("type"), dict(data.get("config") or {})
        if data.get("url"):
            kind_from_url, url_options = parse_url(data["url"], field=f"{cls.component}.url")
            kind = kind or kind_from_url
            options = {**url_options, **options}
        if not kind:
            raise ConfigError(f"{cls.component}.type: give a backend type or a url")
        async_cls = component_class(kind, cls.component, field=f"{cls.component}.type")
        return sync_twin_of(async_cls).from_dict(options)


class TaskQueue(_Factory):
    """Build a sync task queue: ``TaskQueue.from_backend(b, queues=["high", "low"])``."""

    component = "task_queue"


class ResultStore(_Factory):
    """Build a sync result storage: ``ResultStore.from_backend(b)``."""

    component = "result_store"


class EventStore(_Factory):
    """Build a sync event storage: ``EventStore.from_backend(b)``."""

    component = "event_store"
