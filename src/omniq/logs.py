"""Library logging: the ``omniq`` logger tree, levels from settings, never a handler.

Levels: ``LOG_LEVEL`` for ``omniq``; ``COMPONENT_LOG_LEVELS`` (JSON, e.g.
``{"worker": "DEBUG", "events": "ERROR"}``) for ``omniq.<component>``; ``DISABLE_LOGGING``
silences the tree. Task events are a separate thing (the event storage), not log records.
"""

from __future__ import annotations

import logging

from omniq.config import Settings

__all__ = ["configure_logging"]


def configure_logging(settings: Settings) -> None:
    """Apply the settings' levels to the ``omniq`` loggers (handlers are the application's)."""
    root = logging.getLogger("omniq")
    # Above CRITICAL: the loggers below inherit it, so the whole tree is silent.
    root.setLevel(logging.CRITICAL + 1 if settings.DISABLE_LOGGING else settings.LOG_LEVEL.upper())
    for component, level in settings.COMPONENT_LOG_LEVELS.items():
        if settings.DISABLE_LOGGING:
            break
        logging.getLogger(f"omniq.{component}").setLevel(level.upper())
