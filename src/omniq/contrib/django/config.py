"""OmniQ facades configured from Django's ``TASKS`` setting (one per backend alias).

``OPTIONS`` of an ``omniq.contrib.django.OmniQBackend`` entry take what :meth:`OmniQ.from_dict`
takes (``project_name``, ``base_dir``, ``task_queue``, ``result_store``, ``event_store``,
``worker``) plus:

- ``url``: one backend URL for every component not configured by its own section (the events
  too where that backend stores events; elsewhere they follow the settings' default);
- ``settings``: :class:`~omniq.config.Settings` fields over the ``OMNIQ_*`` variables;
- ``task_options``: enqueue options for every Django task (``max_retries``, ``retry_delay``,
  ``timeout``, ``ttl``, ``result_ttl``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from omniq import OmniQ
from omniq.backend.base import component_class
from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.urls import parse_url

__all__ = ["TASK_OPTIONS", "build_omniq", "close_all", "get_omniq", "options_of"]

TASK_OPTIONS = frozenset({"max_retries", "retry_delay", "timeout", "ttl", "result_ttl"})
_OWN = frozenset({"url", "settings", "task_options"})
_SECTIONS = ("task_queue", "result_store", "event_store")

_lock = threading.Lock()
_facades: dict[str, OmniQ] = {}


def options_of(alias: str) -> dict[str, Any]:
    """The ``OPTIONS`` of the ``TASKS`` entry ``alias`` (a ConfigError if there is none)."""
    from django.conf import settings

    entry = settings.TASKS.get(alias)
    if entry is None:
        raise ConfigError(f"TASKS has no backend {alias!r}; known: {sorted(settings.TASKS)}")
    return dict(entry.get("OPTIONS", {}))


def build_omniq(options: Mapping[str, Any]) -> OmniQ:
    """A new facade from one backend's ``OPTIONS`` (its caller closes it)."""
    unknown = set(options.get("task_options", {})) - TASK_OPTIONS
    if unknown:
        raise ConfigError(
            f"OPTIONS.task_options: unknown option(s) {sorted(unknown)}; "
            f"allowed: {sorted(TASK_OPTIONS)}"
        )
    settings = Settings.from_env(**options.get("settings", {}))
    config = {key: value for key, value in options.items() if key not in _OWN}
    url = options.get("url")
    if url:
        kind, _ = parse_url(url, field="OPTIONS.url")
        for section in _SECTIONS:
            if section == "event_store" and not _has_events(kind):
                continue
            config.setdefault(section, {"url": url})
    return OmniQ.from_dict(config, settings=settings)


def _has_events(kind: str) -> bool:
    try:
        component_class(kind, "event_store")
    except ConfigError:
        return False
    return True


def get_omniq(alias: str = "default") -> OmniQ:
    """The process's facade for the ``TASKS`` backend ``alias``, configured from its
    ``OPTIONS`` (built on first use, shared by every thread)."""
    with _lock:
        facade = _facades.get(alias)
        if facade is None:
            facade = _facades[alias] = build_omniq(options_of(alias))
        return facade


def close_all() -> None:
    """Close every facade :func:`get_omniq` built (the next call builds anew)."""
    with _lock:
        facades = list(_facades.values())
        _facades.clear()
    for facade in facades:
        facade.close()
