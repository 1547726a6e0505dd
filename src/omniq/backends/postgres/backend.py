"""The PostgreSQL backend: all three storages in one database (``omniq[postgres]``)."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend
from omniq.backends.postgres.options import PostgresConnection, PostgresOptions
from omniq.config import Settings

__all__ = ["PostgresBackend"]


class PostgresBackend(Backend):
    """Task queue, results and events in PostgreSQL: ``dsn=`` or host/port/username/password/
    database (:class:`~omniq.backends.postgres.options.PostgresConnection`)."""

    name = "postgres"
    options_class = PostgresOptions

    def __init__(
        self,
        *,
        project_name: str | None = None,
        settings: Settings | None = None,
        **connection: Unpack[PostgresConnection],
    ) -> None:
        super().__init__(project_name=project_name, settings=settings, **connection)
