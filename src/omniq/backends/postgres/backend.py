"""The PostgreSQL backend: all three storages in one database (``omniq[postgres]``)."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.postgres.options import PostgresConnection, PostgresOptions

__all__ = ["PostgresBackend", "PostgresKeywords"]


class PostgresKeywords(PostgresConnection, BackendOptions, total=False):
    """The keywords of :class:`PostgresBackend`."""


class PostgresBackend(Backend):
    """Task queue, results and events in PostgreSQL: ``dsn=`` or host/port/username/password/
    database (:class:`~omniq.backends.postgres.options.PostgresConnection`)."""

    name = "postgres"
    options_class = PostgresOptions

    def __init__(self, **options: Unpack[PostgresKeywords]) -> None:
        super().__init__(**options)
