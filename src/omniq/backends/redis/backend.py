"""The Redis backend: task queue and results (``omniq[redis]``); events go elsewhere."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend
from omniq.backends.redis.options import RedisConnection, RedisOptions
from omniq.config import Settings

__all__ = ["RedisBackend"]


class RedisBackend(Backend):
    """Task queue and results in Redis (``url="redis://host:6379/0"``,
    :class:`~omniq.backends.redis.options.RedisConnection`). Redis keeps no event storage: pass
    ``event_store_backend=`` (SQLite, PostgreSQL, files) to ``OmniQ.from_backend``."""

    name = "redis"
    options_class = RedisOptions

    def __init__(
        self,
        *,
        project_name: str | None = None,
        settings: Settings | None = None,
        **connection: Unpack[RedisConnection],
    ) -> None:
        super().__init__(project_name=project_name, settings=settings, **connection)
