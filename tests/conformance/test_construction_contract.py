"""One construction rule on every backend: each way to build a component returns an instance of
the class it is called on (an async class: that class; a sync twin: that twin); a backend's
factory methods build its async components; ``TaskQueue``/``ResultStore``/``EventStore`` build
sync twins, instances of themselves."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from backends import BackendSpec

import omniq.models
from omniq import EventStore, ResultStore, TaskQueue
from omniq._configurable import Options
from omniq._sync import SyncTwin
from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.factories import sync_twin_of
from omniq.queue import AsyncMemoryTaskQueue, AsyncTaskQueue, SQLiteTaskQueue
from omniq.registry import backend_entry, load
from omniq.storage import AsyncEventStorage, AsyncResultStorage

_CONTRACTS = {
    "task_queue": (AsyncTaskQueue, TaskQueue),
    "result_store": (AsyncResultStorage, ResultStore),
    "event_store": (AsyncEventStorage, EventStore),
}


def _components(spec: BackendSpec) -> dict[str, type[Any]]:
    """The backend's own async classes (not the event storage it borrows from another)."""
    paths = {"task_queue": spec.queue, "result_store": spec.results}
    if spec.events and spec.event_options is None:
        paths["event_store"] = spec.events
    found = {}
    for component, path in paths.items():
        module, _, name = path.partition(":")
        found[component] = getattr(importlib.import_module(module), name)
    return found


def _url(spec: BackendSpec) -> str:
    options = spec.options
    if "dsn" in options:
        return str(options["dsn"])
    if "url" in options:
        return str(options["url"])
    if "servers" in options:
        return ",".join(options["servers"])
    if "db_path" in options:
        return f"sqlite:///{options['db_path']}"
    if "base_dir" in options:
        base_dir = str(options["base_dir"])
        return base_dir if "://" in base_dir else f"file://{base_dir}"
    return "memory://"


def _backend(spec: BackendSpec, project: str) -> Any:
    kind = spec.name.split("-")[0]
    entry = backend_entry(kind)
    assert entry.backend is not None
    return load(entry.backend, what=kind)(project_name=project, **spec.options)


def _close(component: Any) -> None:
    if isinstance(component, SyncTwin):
        component.close()
    else:
        asyncio.run(component.close())


def _check(built: Any, cls: type[Any], project: str) -> None:
    try:
        assert type(built) is cls, f"{cls.__name__} built a {type(built).__name__}"
        assert built.project_name == project
    finally:
        _close(built)


def test_every_class_method_returns_its_own_class(spec: BackendSpec, project: str) -> None:
    args = spec.component_args(project)
    for async_cls in _components(spec).values():
        for cls in (async_cls, sync_twin_of(async_cls)):
            _check(cls(**args), cls, project)
            _check(cls.from_dict(args), cls, project)
            _check(cls.from_config(async_cls.config_class(**args)), cls, project)
            _check(cls.from_url(_url(spec), project_name=project), cls, project)
            _check(cls.from_backend(_backend(spec, project)), cls, project)


def test_backend_factories_return_what_their_names_say(spec: BackendSpec, project: str) -> None:
    backend = _backend(spec, project)
    for component, async_cls in _components(spec).items():
        contract, factory = _CONTRACTS[component]
        _check(getattr(backend, component)(), async_cls, project)
        _check(contract.from_backend(backend), async_cls, project)
        from_factory = factory.from_backend(backend)
        assert isinstance(from_factory, factory)
        _check(from_factory, sync_twin_of(async_cls), project)
        _check(contract.from_url(_url(spec), project_name=project), async_cls, project)
        from_url = factory.from_url(_url(spec), project_name=project)
        assert isinstance(from_url, factory)
        _check(from_url, sync_twin_of(async_cls), project)


def test_a_class_refuses_another_backends_backend_or_url(spec: BackendSpec, project: str) -> None:
    if spec.name == "memory":
        return  # the memory queue is the other backend of this test
    backend = _backend(spec, project)
    with pytest.raises(ConfigError, match="not a component of"):
        AsyncMemoryTaskQueue.from_backend(backend)
    with pytest.raises(ConfigError, match="not a component of"):
        AsyncMemoryTaskQueue.from_url(_url(spec))


def test_the_factories_instance_checks_follow_the_contracts() -> None:
    queue_twin = sync_twin_of(AsyncMemoryTaskQueue)
    assert issubclass(queue_twin, TaskQueue)
    assert not issubclass(queue_twin, ResultStore)
    assert not isinstance(AsyncMemoryTaskQueue(), TaskQueue)  # async: not a sync twin


CONFIGS = [name for name in omniq.models.__all__ if name.endswith(("QueueConfig", "StorageConfig"))]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_component_config_defaults_project_name_to_none(name: str) -> None:
    config_class = getattr(omniq.models, name)
    assert issubclass(config_class, Options)
    assert config_class().project_name is None


def test_a_default_project_name_is_the_setting(tmp_path: Any) -> None:
    config = omniq.models.SQLiteTaskQueueConfig(db_path=str(tmp_path / "omniq.db"))
    queue = SQLiteTaskQueue.from_config(config, settings=Settings(PROJECT_NAME="from-settings"))
    _check(queue, SQLiteTaskQueue, "from-settings")
