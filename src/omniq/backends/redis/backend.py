"""The Redis backend: task queue and results (``omniq[redis]``); events go elsewhere."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.redis.options import RedisConnection, RedisOptions

__all__ = ["RedisBackend", "RedisKeywords"]


class RedisKeywords(RedisConnection, BackendOptions, total=False):
    """The keywords of :class:`RedisBackend`."""


class RedisBackend(Backend):
    """Task queue and results in Redis (``url="redis://host:6379/0"``,
    :class:`~omniq.backends.redis.options.RedisConnection`). Redis keeps no event storage: pass
    ``event_store_backend=`` (SQLite, PostgreSQL, files) to ``OmniQ.from_backend``."""

    name = "redis"
    options_class = RedisOptions

    def __init__(self, **options: Unpack[RedisKeywords]) -> None:
        super().__init__(**options)
