"""The PostgreSQL backend: all three storages in one database (``omniq[postgres]``)."""

from __future__ import annotations

from omniq.backend.base import Backend
from omniq.config import Settings

__all__ = ["PostgresBackend"]


class PostgresBackend(Backend):
    """Task queue, results and events in PostgreSQL: ``dsn=`` or host/port/username/password/
    database."""

    name = "postgres"

    def __init__(
        self,
        *,
        project_name: str | None = None,
        dsn: str | None = None,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        database: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            project_name=project_name,
            dsn=dsn,
            host=host,
            port=port,
            username=username,
            password=password,
            database=database,
            settings=settings,
        )
