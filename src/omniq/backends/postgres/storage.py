"""PostgreSQL result and event storage (tables ``omniq_results`` and ``omniq_events``; layout in
``omniq/_postgres/__init__.py``).

Results: ``put_many`` is one upsert of arrays that also NOTIFYs the written task ids on the
project's result channel when it commits. ``get(wait=True)`` LISTENs on a dedicated connection
of its result-storage object (one per object, shared by all its waiters, opened on the first
wait), so it returns as soon as the result is written by any process, without polling.

Events: plain columns (never pickles), written in batches with one INSERT of arrays, indexed for
the three queries of ``get_events``: by task, by type over time, by time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from omniq.backends.postgres import (
    PostgresEventStorageConfig,
    PostgresResultStorageConfig,
    options_of,
)
from omniq.backends.postgres.codec import channel_name, event_arrays, event_from_row, payload_chunks
from omniq.backends.postgres.connection import Client, connect_options, shielded
from omniq.backends.postgres.listener import Listener
from omniq.backends.postgres.sql import QUERIES
from omniq.config import Settings
from omniq.errors import StorageError, require
from omniq.models import EventType, TaskEvent, TaskResult
from omniq.serialization import Serializer
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

__all__ = [
    "AsyncPostgresEventStorage",
    "AsyncPostgresResultStorage",
    "PostgresEventStorageConfig",
    "PostgresResultStorageConfig",
]

# A waiter looks again this often even without a notification: the listener reconnects after a
# lost connection (and wakes everyone), so this only bounds the cost of an unforeseen miss.
_RECHECK_S = 2.0


def _connection(
    dsn: str | None,
    host: str | None,
    port: int | None,
    username: str | None,
    password: str | None,
    database: str | None,
    pool_min_size: int | None,
    pool_max_size: int | None,
) -> Any:
    require("asyncpg", "postgres")
    return connect_options(
        dsn=dsn,
        host=host,
        port=port,
        username=username,
        password=password,
        database=database,
        pool_min_size=pool_min_size,
        pool_max_size=pool_max_size,
    )


class AsyncPostgresResultStorage(AsyncResultStorage):
    """Results in a PostgreSQL database."""

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
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
    ) -> None:
        """Connect (lazily, on first use) to the results in a PostgreSQL database.

        Parameters:
            project_name: namespace inside the database; projects never see each other's results.
            dsn, host, port, username, password, database: the connection, as for
                :class:`.queue.AsyncPostgresTaskQueue`.
            pool_min_size, pool_max_size: connections kept open / at most (default 1 and 10).
            serializer: encodes result values (default: from ``Settings``).
            settings: defaults (default: ``Settings.from_env()``).
        """
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self.options = _connection(
            dsn, host, port, username, password, database, pool_min_size, pool_max_size
        )
        self._db = Client(self.options)
        self._channel = channel_name("results", self.project_name)
        self._listener = Listener(self.options, self._channel)

    @classmethod
    def from_config(cls, config: PostgresResultStorageConfig) -> AsyncPostgresResultStorage:
        return cls(project_name=config.project_name, **options_of(config))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.describe()} project={self.project_name!r}>"

    async def close(self) -> None:
        """Close the listener and release the pool (both reopen on next use)."""
        await self._listener.close()
        await self._db.close()

    async def get(
        self, task_id: str, wait: bool = False, timeout: float | None = None
    ) -> TaskResult | None:
        """The result of a task; with ``wait``, block until it exists (``TimeoutError`` after
        ``timeout`` seconds), woken by the writer's notification."""
        if not wait:
            return await self._get_live(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                signal = await self._listener.subscribe([task_id])
            except StorageError:
                signal = None  # cannot listen: look, then look again shortly
            try:
                result = await self._get_live(task_id)
                if result is not None:
                    return result
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no result for task {task_id} within {timeout} s")
                pause = _RECHECK_S if remaining is None else min(remaining, _RECHECK_S)
                if signal is None:
                    await asyncio.sleep(min(pause, 0.2))
                else:
                    await asyncio.wait({signal}, timeout=pause)
            finally:
                if signal is not None:
                    signal.cancel()

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        await self._db.fetchrow(
            QUERIES["put_results"],
            *self.put_parameters(results),
            retry=True,  # an upsert: writing it twice is the same as once
        )

    def put_parameters(self, results: list[tuple[TaskResult, bytes]]) -> list[Any]:
        """The parameters of the ``put_results`` statement for encoded results (the task
        queue's combined write uses them too)."""
        latest = {result.task_id: (result, data) for result, data in results}  # one per task
        ids = list(latest)
        return [
            self.project_name,
            ids,
            [result.expires_at for result, _ in latest.values()],
            [result.finished_at for result, _ in latest.values()],
            [result.schedule_id for result, _ in latest.values()],
            [data for _, data in latest.values()],
            self._channel,
            payload_chunks(ids),
        ]

    async def _get(self, task_id: str) -> bytes | None:
        return await self._db.fetchval(
            QUERIES["get_result"], self.project_name, task_id, retry=True
        )

    async def _delete(self, task_id: str) -> bool:
        status = await self._db.execute(
            QUERIES["delete_result"], self.project_name, task_id, retry=True
        )
        return status != "DELETE 0"

    async def _delete_expired(self, now: datetime) -> int:
        status = await self._db.execute(
            QUERIES["delete_expired_results"], self.project_name, now, retry=True
        )
        return int(status.split()[-1])


class AsyncPostgresEventStorage(AsyncEventStorage):
    """Events in a PostgreSQL database, as plain columns."""

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
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        """Connect (lazily, on first use) to the events in a PostgreSQL database.

        Parameters:
            project_name: namespace inside the database; projects never see each other's events.
            dsn, host, port, username, password, database: the connection, as for
                :class:`.queue.AsyncPostgresTaskQueue`.
            pool_min_size, pool_max_size: connections kept open / at most (default 1 and 10).
            settings: defaults (default: ``Settings.from_env()``).
        """
        super().__init__(project_name=project_name, settings=settings)
        self.options = _connection(
            dsn, host, port, username, password, database, pool_min_size, pool_max_size
        )
        self._db = Client(self.options)

    @classmethod
    def from_config(cls, config: PostgresEventStorageConfig) -> AsyncPostgresEventStorage:
        return cls(project_name=config.project_name, **options_of(config))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.describe()} project={self.project_name!r}>"

    async def close(self) -> None:
        """Release the pool (it reopens on next use)."""
        await self._db.close()

    async def _write_many(self, events: list[TaskEvent]) -> None:
        # A worker stopping may cancel its event writer mid-write: let the batch land anyway.
        await shielded(
            self._db.execute(QUERIES["insert_events"], self.project_name, *event_arrays(events))
        )

    async def _query(
        self,
        task_id: str | None,
        event_type: EventType | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[TaskEvent]:
        clauses, params = [], [self.project_name]
        for clause, value in (
            ("task_id = ", task_id),
            ("type = ", event_type.value if event_type is not None else None),
            ("timestamp >= ", since),
            ("timestamp <= ", until),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"AND {clause}${len(params)}")
        lead = "task_id, " if task_id is not None else "type, " if event_type is not None else ""
        query = QUERIES["query_events"].format(
            filters=" ".join(clauses), order=f"{lead}timestamp, id", limit=f"${len(params) + 1}"
        )
        rows = await self._db.fetch(query, *params, limit, retry=True)
        return [event_from_row(row) for row in rows]

    async def _delete_before(self, before: datetime) -> int:
        status = await self._db.execute(
            QUERIES["delete_events_before"], self.project_name, before, retry=True
        )
        return int(status.split()[-1])
