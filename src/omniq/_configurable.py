"""How every component is built, written once: the constructor, or ``from_config`` (a struct),
``from_dict``, ``from_config_file``, ``from_url`` and ``from_backend``, each returning an instance
of the class it is called on (a sync twin's return the twin).

A component declares ``config_class`` (a msgspec struct whose fields are constructor keywords);
options are validated against it, or against the constructor's signature when it has none. Errors
name the field, the bad value and the allowed values, with a suggestion for near misses.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import msgspec

from omniq._redact import redact_value
from omniq.errors import ConfigError, require

if TYPE_CHECKING:
    from omniq.backend.base import Backend

__all__ = ["Component", "Configurable", "Options", "load_yaml", "validate_options"]


class Options(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every backend's options struct (``backends/<name>/options.py``), which each of its
    component configs extends. Fields left None take their defaults from
    :class:`omniq.config.Settings` (``project_name``: ``PROJECT_NAME``).

    Beside it, a ``<Name>Connection`` TypedDict types the same keywords (but ``project_name``)
    for the constructors of the backend's components and ``Backend``, which take them as
    ``**connection``."""

    project_name: str | None = None


class Configurable:
    """Mixin: build the component from a config struct, a dict or a YAML file."""

    config_class: ClassVar[type[msgspec.Struct] | None] = None

    @classmethod
    def from_config(cls, config: msgspec.Struct, **extra: Any) -> Self:
        """Build from a config struct (``extra``: keywords outside it, such as ``settings``)."""
        expected = cls.config_class
        if expected is not None and not isinstance(config, expected):
            raise ConfigError(
                f"{cls.__name__}.from_config expects a {expected.__name__}, "
                f"got {type(config).__name__}"
            )
        return cls(**msgspec.structs.asdict(config), **extra)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **extra: Any) -> Self:
        """Build from a dict of constructor options, validated first."""
        return cls(**validate_options(cls, data, where=cls.__name__), **extra)

    @classmethod
    def from_config_file(cls, path: str | os.PathLike[str], **extra: Any) -> Self:
        """Build from a YAML file holding the options (or a ``config`` section of them)."""
        data = load_yaml(path)
        if set(data) <= {"type", "config"} and "config" in data:
            data = data["config"] or {}
        return cls.from_dict(data, **extra)


class Component(Configurable):
    """Mixin of the storage contracts (task queue, result and event storage): built from a URL
    or a backend too. Called on a backend's class, these build that class (or fail); called on a
    contract (``AsyncTaskQueue.from_url(...)``), the class of the backend named."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a storage URL (``sqlite:///omniq.db``, ``redis://...``; see
        :mod:`omniq.urls`), ``options`` adding to or overriding what the URL gives."""
        from omniq.backend.base import implementation
        from omniq.urls import parse_url

        kind, url_options = parse_url(url)
        _, target = implementation(cls, kind, field=f"{cls.__name__}.from_url")
        return target.from_dict({**url_options, **options})  # type: ignore[no-any-return]

    @classmethod
    def from_backend(cls, backend: Backend, **options: Any) -> Self:
        """This component of ``backend``, ``options`` overriding the backend's (a task queue:
        ``queues=[...]``; ``event_store=None`` records no ENQUEUED events)."""
        return backend.build(cls, **options)


def validate_options(cls: type, data: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Options checked against ``cls.config_class`` (converted) or ``cls.__init__``'s keywords."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
    config_class = getattr(cls, "config_class", None)
    allowed = _allowed_keywords(cls)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        from omniq.registry import suggest

        key = unknown[0]
        raise ConfigError(
            f"{where}: unknown option {key!r}{suggest(str(key), sorted(allowed))}; "
            f"allowed: {sorted(allowed)}"
        )
    if config_class is None:
        return dict(data)
    struct_fields = set(config_class.__struct_fields__)
    inside = {
        k: os.fspath(v) if isinstance(v, os.PathLike) else v
        for k, v in data.items()
        if k in struct_fields
    }
    try:
        converted = msgspec.convert(inside, config_class, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_explain(exc, inside)}") from exc
    options = msgspec.structs.asdict(converted)
    options = {k: options[k] for k in inside}  # only what was given: defaults stay the class's
    options.update({k: v for k, v in data.items() if k not in struct_fields})
    return options


def _allowed_keywords(cls: type[Any]) -> set[str]:
    config_class = getattr(cls, "config_class", None)
    names = set(config_class.__struct_fields__) if config_class is not None else set()
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name != "self" and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            names.add(name)
    return names


def _explain(exc: msgspec.ValidationError, data: Mapping[str, Any]) -> str:
    """msgspec's message, with the offending value added."""
    message = str(exc)
    match = re.search(r"at `\$\.(\w+)", message)
    if match and match.group(1) in data:
        name = match.group(1)
        return f"{name}={redact_value(name, data[name])!r}: {message.split(' - at ')[0]}"
    return message


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML file's top-level mapping; parse errors name the file, line and column."""
    yaml = require("yaml", "yaml")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {os.fspath(path)!r} does not exist") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        raise ConfigError(f"{os.fspath(path)}: YAML error at {where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{os.fspath(path)}: expected a mapping at the top level")
    return data
