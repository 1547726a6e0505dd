"""Housekeeping that workers run in the background, each step bounded in cost.

- Tasks whose TTL passed before they started end EXPIRED (with a result and an EXPIRED event),
  also in queues no worker consumes. A pass looks at the oldest ``batch`` PENDING and WAITING
  tasks; workers also expire tasks they claim too late, so consumed queues never need a scan.
- Results past their ``result_ttl`` are deleted (backends with native expiry do it themselves).
- Events older than ``Settings.EVENT_RETENTION`` are deleted.

Several workers may run this at once: every step is idempotent and compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from omniq.dependencies import record_ending
from omniq.models import TaskError, TaskEvent, TaskStatus, utcnow

__all__ = ["Maintenance"]

logger = logging.getLogger("omniq.maintenance")

_EXPIRABLE = (TaskStatus.PENDING, TaskStatus.WAITING, TaskStatus.RETRYING)


class Maintenance:
    """Expires overdue tasks and deletes old results and events."""

    def __init__(
        self,
        queue: Any,
        result_store: Any | None = None,
        event_store: Any | None = None,
        emit: Callable[[TaskEvent], None] | None = None,
        *,
        event_retention: float | None = None,
        batch: int = 500,
    ) -> None:
        self.queue = queue
        self.result_store = result_store
        self.event_store = event_store
        self.emit = emit
        self.event_retention = event_retention
        self.batch = batch

    async def expire_overdue(self) -> int:
        """End PENDING/WAITING/RETRYING tasks whose TTL passed; returns how many."""
        now = utcnow()
        expired = 0
        for status in (TaskStatus.PENDING, TaskStatus.WAITING):
            for task in await self.queue.list_tasks(status=status, limit=self.batch):
                if task.expires_at is None or task.expires_at > now or task.attempts:
                    continue
                error = TaskError(
                    type="TaskExpired",
                    message=f"not started before its TTL ran out at {task.expires_at}",
                )
                moved = await self.queue.transition(
                    task.id, _EXPIRABLE, status=TaskStatus.EXPIRED, finished_at=now, error=error
                )
                if moved is not None:
                    expired += 1
                    await record_ending(
                        self.result_store, self.emit, task, TaskStatus.EXPIRED, error
                    )
        return expired

    async def clean_up(self) -> tuple[int, int]:
        """Delete expired results and events past retention; returns (results, events)."""
        results = events = 0
        if self.result_store is not None:
            try:
                results = await self.result_store.cleanup_expired()
            except Exception:
                logger.warning("result clean-up failed", exc_info=True)
        if self.event_store is not None and self.event_retention is not None:
            try:
                events = await self.event_store.delete_before(
                    utcnow() - timedelta(seconds=self.event_retention)
                )
            except Exception:
                logger.warning("event clean-up failed", exc_info=True)
        return results, events
