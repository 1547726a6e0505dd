"""The Redis backend: task queue and results (``omniq[redis]``); events go elsewhere."""

from __future__ import annotations

from omniq.backend.base import Backend
from omniq.config import Settings

__all__ = ["RedisBackend"]


class RedisBackend(Backend):
    """Task queue and results in Redis (``url="redis://host:6379/0"``). Redis keeps no event
    storage: pass ``event_store_backend=`` (SQLite, PostgreSQL, files) to ``OmniQ.from_backend``."""

    name = "redis"

    def __init__(
        self,
        *,
        project_name: str | None = None,
        url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(project_name=project_name, url=url, settings=settings)
