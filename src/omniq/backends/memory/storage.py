"""In-memory result and event storage (one process, no persistence)."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

from omniq._notify import Signal
from omniq.backends.memory.options import MemoryEventStorageConfig, MemoryResultStorageConfig
from omniq.models import EventType, TaskEvent, TaskResult
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

__all__ = [
    "AsyncMemoryEventStorage",
    "AsyncMemoryResultStorage",
]


class AsyncMemoryResultStorage(AsyncResultStorage):
    """Results in this process's memory."""

    config_class = MemoryResultStorageConfig

    def __init__(self, *, project_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(project_name=project_name, **kwargs)
        self._lock = threading.Lock()
        self._results: dict[str, tuple[datetime | None, bytes]] = {}
        self._signal = Signal()

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        with self._lock:
            for result, data in results:
                self._results[result.task_id] = (result.expires_at, data)
        self._signal.notify(r.task_id for r, _ in results)

    async def _get(self, task_id: str) -> bytes | None:
        entry = self._results.get(task_id)
        return None if entry is None else entry[1]

    async def _delete(self, task_id: str) -> bool:
        with self._lock:
            return self._results.pop(task_id, None) is not None

    async def _delete_expired(self, now: datetime) -> int:
        with self._lock:
            doomed = [k for k, (exp, _) in self._results.items() if exp is not None and exp <= now]
            for key in doomed:
                del self._results[key]
        return len(doomed)

    def _result_signal(self, task_id: str) -> asyncio.Future[None] | None:
        return self._signal.subscribe(task_id)


class AsyncMemoryEventStorage(AsyncEventStorage):
    """Events in this process's memory."""

    config_class = MemoryEventStorageConfig

    def __init__(self, *, project_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(project_name=project_name, **kwargs)
        self._lock = threading.Lock()
        self._events: list[TaskEvent] = []

    async def _write_many(self, events: list[TaskEvent]) -> None:
        with self._lock:
            self._events.extend(events)

    async def _query(
        self,
        task_id: str | None,
        event_type: EventType | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[TaskEvent]:
        with self._lock:
            events = list(self._events)
        found = [
            e
            for e in events
            if (task_id is None or e.task_id == task_id)
            and (event_type is None or e.type is event_type)
            and (since is None or e.timestamp >= since)
            and (until is None or e.timestamp <= until)
        ]
        found.sort(key=lambda e: e.timestamp)  # stable: ties keep write order
        return found[:limit]

    async def _delete_before(self, before: datetime) -> int:
        with self._lock:
            kept = [e for e in self._events if e.timestamp >= before]
            removed = len(self._events) - len(kept)
            self._events = kept
        return removed
