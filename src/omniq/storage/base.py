"""The result- and event-storage contracts: behaviour here, primitives in each backend."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

from omniq._configurable import Component
from omniq._tasks import wait_within
from omniq.config import Settings, get_settings
from omniq.errors import ConfigError
from omniq.models import EventType, TaskEvent, TaskResult, utcnow
from omniq.queue.base import _check_name
from omniq.serialization import Serializer

__all__ = ["AsyncEventStorage", "AsyncResultStorage"]


def _aware(moment: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC, as everywhere in OmniQ."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


_POLL_START, _POLL_MAX = 0.002, 0.05


class AsyncResultStorage(Component, abc.ABC):
    """Stores task results and errors, each with an expiry time."""

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.project_name = project_name or self.settings.PROJECT_NAME
        _check_name("project_name", self.project_name)
        self.serializer = serializer or Serializer(
            self.settings.SECRET_KEY, allow_pickle=self.settings.ALLOW_PICKLE
        )

    async def get(
        self, task_id: str, wait: bool = False, timeout: float | None = None
    ) -> TaskResult | None:
        """The result of a task; with ``wait``, block until it exists (``TimeoutError`` after
        ``timeout`` seconds)."""
        result = await self._get_live(task_id)
        if result is not None or not wait:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _POLL_START
        while True:
            signal = self._result_signal(task_id)
            result = await self._get_live(task_id)
            if result is not None:
                if signal is not None:
                    signal.cancel()
                return result
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if signal is not None:
                    signal.cancel()
                raise TimeoutError(f"no result for task {task_id} within {timeout} s")
            if signal is not None:
                # A signal may be missed across processes: re-check at the slowest poll pace.
                wait_for = _POLL_MAX * 4 if remaining is None else min(remaining, _POLL_MAX * 4)
                await wait_within(signal, wait_for)
            else:
                await asyncio.sleep(delay if remaining is None else min(delay, remaining))
                delay = min(delay * 1.5, _POLL_MAX)

    async def put(self, result: TaskResult) -> None:
        """Store (or replace) a result."""
        await self.put_many([result])

    async def put_many(self, results: Sequence[TaskResult]) -> None:
        """Store several results in one step where the backend allows."""
        if results:
            await self._put_many(self.encode_many(results))

    async def put_encoded(self, encoded: Sequence[tuple[TaskResult, bytes]]) -> None:
        """Store results already paired with their stored form by :meth:`encode` (workers
        encode each result apart, so that one that cannot be encoded fails only its task)."""
        if encoded:
            await self._put_many(list(encoded))

    @property
    def database(self) -> Hashable | None:
        """The database these results live in, as an opaque identity: a task queue reporting
        the same writes results and task outcomes in one transaction. None (the default): no
        task queue shares this storage's transactions."""
        return None

    def encode(self, result: TaskResult) -> bytes:
        """A result's stored form, sealed for its task with a secret key
        (``SerializationError`` if its value cannot be encoded)."""
        return self.serializer.encode_result(result, self.project_name)

    def encode_many(self, results: Sequence[TaskResult]) -> list[tuple[TaskResult, bytes]]:
        """Each result with its stored form."""
        return [(r, self.encode(r)) for r in results]

    async def delete(self, task_id: str) -> bool:
        """Remove a result; True if there was one."""
        return await self._delete(task_id)

    async def cleanup_expired(self) -> int:
        """Delete results past their expiry; returns how many."""
        return await self._delete_expired(utcnow())

    async def close(self) -> None:
        """Release connections and files."""

    async def __aenter__(self) -> AsyncResultStorage:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def _get_live(self, task_id: str) -> TaskResult | None:
        data = await self._get(task_id)
        if data is None:
            return None
        return self._live(task_id, data)

    def _live(self, task_id: str, data: bytes) -> TaskResult | None:
        """The stored result of ``task_id`` (its seal checked), or None if it expired."""
        result = self.serializer.decode_result(data, self.project_name, task_id)
        if result.expires_at is not None and result.expires_at <= utcnow():
            return None
        return result

    def _result_signal(self, task_id: str) -> asyncio.Future[None] | None:
        """A future resolved when ``task_id``'s result may have been written, or None to poll.

        Backends that can be notified override this; it is subscribed before the re-check, so
        no write between check and wait is missed (within the notifying scope).
        """
        return None

    # --- primitives --------------------------------------------------------------------------

    @abc.abstractmethod
    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        """Store each encoded result under its ``task_id`` (replacing any), atomically per result.
        The result's ``expires_at``, ``schedule_id`` and ``finished_at`` are there for indexing."""

    @abc.abstractmethod
    async def _get(self, task_id: str) -> bytes | None:
        """The encoded result, or None."""

    @abc.abstractmethod
    async def _delete(self, task_id: str) -> bool:
        """Delete one result."""

    @abc.abstractmethod
    async def _delete_expired(self, now: datetime) -> int:
        """Delete results whose ``expires_at`` is before ``now``."""


class AsyncEventStorage(Component, abc.ABC):
    """Stores the life-cycle events of tasks and schedules; queryable."""

    def __init__(
        self, *, project_name: str | None = None, settings: Settings | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.project_name = project_name or self.settings.PROJECT_NAME
        _check_name("project_name", self.project_name)

    async def log(self, event: TaskEvent) -> None:
        """Store one event."""
        await self._write_many([event])

    async def log_many(self, events: Sequence[TaskEvent]) -> None:
        """Store events in one step where the backend allows."""
        if events:
            await self._write_many(list(events))

    async def get_events(
        self,
        task_id: str | None = None,
        event_type: EventType | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[TaskEvent]:
        """Events in the order they happened, filtered."""
        kind = None
        if event_type is not None:
            try:
                kind = EventType(event_type)
            except ValueError as exc:
                raise ConfigError(
                    f"event_type {event_type!r} is not one of {[e.value for e in EventType]}"
                ) from exc
        return await self._query(task_id, kind, _aware(since), _aware(until), limit)

    async def delete_before(self, before: datetime) -> int:
        """Delete events older than ``before``; returns how many."""
        return await self._delete_before(before)

    async def close(self) -> None:
        """Release connections and files."""

    async def __aenter__(self) -> AsyncEventStorage:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    @abc.abstractmethod
    async def _write_many(self, events: list[TaskEvent]) -> None:
        """Append events."""

    @abc.abstractmethod
    async def _query(
        self,
        task_id: str | None,
        event_type: EventType | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[TaskEvent]:
        """Matching events ordered by timestamp (ties: write order), at most ``limit``."""

    @abc.abstractmethod
    async def _delete_before(self, before: datetime) -> int:
        """Delete events with a timestamp before ``before``."""
