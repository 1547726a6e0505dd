"""Buffered event writing: task execution never waits for, or fails because of, the event store."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from omniq._tasks import cancel_and_wait, wait_within
from omniq.models import TaskEvent

__all__ = ["EventBuffer"]

_CLOSE_WAIT = 10.0

logger = logging.getLogger("omniq.events")


class EventBuffer:
    """Collects events and writes them in batches from a background task."""

    def __init__(
        self, store: Any | None, *, flush_interval: float = 0.05, max_pending: int = 100_000
    ) -> None:
        self._store = store
        self._pending: list[TaskEvent] = []
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0
        self._closing = False

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def emit(self, event: TaskEvent) -> None:
        """Queue an event; never blocks. Drops the oldest events past ``max_pending``."""
        if self._store is None:
            return
        pending = self._pending
        pending.append(event)
        if len(pending) > self._max_pending:
            del pending[: len(pending) - self._max_pending]
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                logger.warning("event store is falling behind: dropping old events")
        if len(pending) >= 1000:
            self._wake.set()

    def start(self) -> None:
        if self._store is not None and self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="omniq-events")

    async def _run(self) -> None:
        while not self._closing:
            await wait_within(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending; on a store error keep the events for the next try."""
        if not self._pending or self._store is None:
            return
        batch, self._pending = self._pending, []
        try:
            await self._store.log_many(batch)
        except Exception:
            logger.warning("writing %d events failed; will retry", len(batch), exc_info=True)
            self._pending[:0] = batch

    async def close(self) -> None:
        """Let the loop finish its current write and end, then write what is left."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Not cancelled mid-write: a cancelled write may still land, and retrying it would
            # duplicate events. A store that hangs is given up on after the wait.
            await asyncio.wait([task], timeout=_CLOSE_WAIT)
            await cancel_and_wait([task])
        await self.flush()
