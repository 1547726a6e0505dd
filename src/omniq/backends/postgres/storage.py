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
from collections.abc import Hashable
from datetime import datetime
from typing import Any, Unpack

from omniq.backends.postgres.codec import event_arrays, event_from_row, payload_chunks
from omniq.backends.postgres.component import Connected
from omniq.backends.postgres.connection import shielded
from omniq.backends.postgres.options import (
    PostgresConnection,
    PostgresEventStorageConfig,
    PostgresResultStorageConfig,
)
from omniq.backends.postgres.sql import QUERIES
from omniq.config import Settings
from omniq.errors import StorageError
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


class AsyncPostgresResultStorage(Connected, AsyncResultStorage):
    """Results in a PostgreSQL database."""

    config_class = PostgresResultStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        **connection: Unpack[PostgresConnection],
    ) -> None:
        """Connect (lazily, on first use) to the results in a PostgreSQL database: parameters
        as for :class:`.queue.AsyncPostgresTaskQueue` (``serializer`` encodes result values)."""
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self._connect(**connection)
        self._listen("results")

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

    @property
    def database(self) -> Hashable:
        """The server and database connected to (a task queue there writes these results with
        its task outcomes in one statement, using :meth:`put_parameters`)."""
        return ("postgres", self.options)

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


class AsyncPostgresEventStorage(Connected, AsyncEventStorage):
    """Events in a PostgreSQL database, as plain columns."""

    config_class = PostgresEventStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        settings: Settings | None = None,
        **connection: Unpack[PostgresConnection],
    ) -> None:
        """Connect (lazily, on first use) to the events in a PostgreSQL database: parameters as
        for :class:`.queue.AsyncPostgresTaskQueue`."""
        super().__init__(project_name=project_name, settings=settings)
        self._connect(**connection)

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
        clauses: list[str] = []
        params: list[Any] = [self.project_name]
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
