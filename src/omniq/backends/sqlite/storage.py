"""SQLite result and event storage (tables ``omniq_results`` and ``omniq_events``; layout in
``omniq/_sqlite/schema.sql``).

Each object has its own connection thread; results, events and the task queue may share one
database file. A result waiter is woken as soon as any object on the same file and project in
this process writes that result, and within ~2 ms of another process's commit of it (the
process's watcher of the file: ``watch.py``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import Hashable
from datetime import datetime
from typing import Any, Unpack

from omniq._notify import channel
from omniq.backends.sqlite.codec import ROW_ERRORS, event_from_row, event_params, to_epoch
from omniq.backends.sqlite.connection import Connected, write
from omniq.backends.sqlite.options import (
    SQLiteConnection,
    SQLiteEventStorageConfig,
    SQLiteResultStorageConfig,
)
from omniq.backends.sqlite.sql import QUERIES
from omniq.backends.sqlite.watch import watcher
from omniq.config import Settings
from omniq.errors import StorageError
from omniq.models import EventType, TaskEvent, TaskResult
from omniq.serialization import Serializer
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

__all__ = [
    "AsyncSQLiteEventStorage",
    "AsyncSQLiteResultStorage",
]

PathArg = str | os.PathLike[str]


class AsyncSQLiteResultStorage(Connected, AsyncResultStorage):
    """Results in a SQLite database file."""

    config_class = SQLiteResultStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        **connection: Unpack[SQLiteConnection],
    ) -> None:
        """Open (lazily) the results stored in a SQLite file: parameters as for
        :class:`.queue.AsyncSQLiteTaskQueue` (``serializer`` encodes result values)."""
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self._open(**connection)
        self._signal = channel(("sqlite-results", self.db_path, self.project_name))
        self._probe = functools.partial(_results_present, self.project_name)

    async def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        await self._runner.close()

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        await self._runner.run(_execute_many, QUERIES["put_result"], self.put_rows(results))
        self.written(results)

    @property
    def database(self) -> Hashable:
        """The database file (a task queue on it writes these results with its task outcomes in
        one transaction, using :meth:`put_rows` and :meth:`written`)."""
        return ("sqlite", self.db_path)

    def put_rows(self, results: list[tuple[TaskResult, bytes]]) -> list[dict[str, Any]]:
        """The rows of the ``put_result`` statement for encoded results."""
        return [
            {
                "project": self.project_name,
                "task_id": result.task_id,
                "data": data,
                "expires_at": to_epoch(result.expires_at),
                "schedule_id": result.schedule_id,
                "finished_at": to_epoch(result.finished_at),
            }
            for result, data in results
        ]

    def written(self, results: list[tuple[TaskResult, bytes]]) -> None:
        """Wake this process's waiters for results just committed."""
        self._signal.notify(result.task_id for result, _ in results)

    async def _get(self, task_id: str) -> bytes | None:
        return await self._runner.run(
            _get_result, {"project": self.project_name, "task_id": task_id}
        )

    async def _delete(self, task_id: str) -> bool:
        params = {"project": self.project_name, "task_id": task_id}
        return await self._runner.run(_write, QUERIES["delete_result"], params) > 0

    async def _delete_expired(self, now: datetime) -> int:
        params = {"project": self.project_name, "now": now.timestamp()}
        return await self._runner.run(_write, QUERIES["delete_expired_results"], params)

    def _result_signal(self, task_id: str) -> asyncio.Future[None] | None:
        future = self._signal.subscribe(task_id)
        watcher(self.db_path).watch(self._signal, self._probe)
        return future


class AsyncSQLiteEventStorage(Connected, AsyncEventStorage):
    """Events in a SQLite database file, as plain columns."""

    config_class = SQLiteEventStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        settings: Settings | None = None,
        **connection: Unpack[SQLiteConnection],
    ) -> None:
        """Open (lazily) the events stored in a SQLite file: parameters as for
        :class:`.queue.AsyncSQLiteTaskQueue`."""
        super().__init__(project_name=project_name, settings=settings)
        self._open(**connection)

    async def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        await self._runner.close()

    async def _write_many(self, events: list[TaskEvent]) -> None:
        rows = [event_params(self.project_name, event) for event in events]
        await self._runner.run(_execute_many, QUERIES["insert_event"], rows)

    async def _query(
        self,
        task_id: str | None,
        event_type: EventType | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[TaskEvent]:
        clauses, params = [], {"project": self.project_name, "limit": limit}
        for column, op, value in (
            ("task_id", "=", task_id),
            ("type", "=", event_type.value if event_type is not None else None),
            ("timestamp", ">=", to_epoch(since)),
            ("timestamp", "<=", to_epoch(until)),
        ):
            if value is not None:
                name = f"p{len(params)}"
                clauses.append(f"AND {column} {op} :{name}")
                params[name] = value
        sql = QUERIES["query_events"].format(filters=" ".join(clauses))
        return await self._runner.run(_query_events, sql, params)

    async def _delete_before(self, before: datetime) -> int:
        params = {"project": self.project_name, "before": to_epoch(before)}
        return await self._runner.run(_write, QUERIES["delete_events_before"], params)


# --- transactions (run on the connection's thread) ---------------------------------------------


def _execute_many(conn: sqlite3.Connection, sql: str, rows: list[dict[str, Any]]) -> None:
    with write(conn):
        conn.executemany(sql, rows)


def _write(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> int:
    with write(conn):
        return conn.execute(sql, params).rowcount


def _get_result(conn: sqlite3.Connection, params: dict[str, Any]) -> bytes | None:
    row = conn.execute(QUERIES["get_result"], params).fetchone()
    if row is None:
        return None
    if not isinstance(row["data"], bytes):
        raise StorageError(
            f"the stored result of task {params['task_id']} is not a blob: corrupt row"
        )
    return row["data"]


def _results_present(project: str, conn: sqlite3.Connection, task_ids: list[Hashable]) -> list[str]:
    """Which of ``task_ids`` have a result (run on the watcher's connection)."""
    params = {"project": project, "ids": json.dumps(task_ids)}
    return [row[0] for row in conn.execute(QUERIES["results_present"], params)]


def _query_events(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[TaskEvent]:
    events = []
    for row in conn.execute(sql, params).fetchall():
        try:
            events.append(event_from_row(row))
        except ROW_ERRORS as exc:
            raise StorageError(f"event row {row['id']} is corrupt: {exc}") from exc
    return events
