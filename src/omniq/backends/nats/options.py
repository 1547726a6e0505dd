"""The NATS backend's options, and the config struct of each of its components."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from omniq._configurable import Options

__all__ = [
    "NATSConnection",
    "NATSOptions",
    "NATSResultStorageConfig",
    "NATSTaskQueueConfig",
]


class NATSConnection(TypedDict, total=False):
    """``servers``: ``nats://host:4222`` URLs (a list, or one string, comma-separated allowed;
    credentials in the URL as ``nats://user:pw@host``; default ``nats://127.0.0.1:4222``);
    ``replicas``: stream replicas of the buckets an object creates (a cluster: 3; default 1);
    ``connect_options``: more keywords for ``nats.connect`` (``tls``, ``user_credentials``,
    ``token``, ...)."""

    servers: str | Sequence[str] | None
    replicas: int
    connect_options: dict[str, Any] | None


class NATSOptions(Options, frozen=True, kw_only=True):
    """The connection (see :class:`NATSConnection`) and ``project_name``."""

    servers: str | list[str] | None = None
    replicas: int = 1
    connect_options: dict[str, Any] = {}


class NATSTaskQueueConfig(NATSOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.nats.queue.AsyncNATSTaskQueue`."""

    queues: list[str] | None = None
    ack_wait: float | None = None


class NATSResultStorageConfig(NATSOptions, frozen=True, kw_only=True):
    """Configuration of :class:`~omniq.backends.nats.storage.AsyncNATSResultStorage`."""
