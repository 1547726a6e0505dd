"""Worker heartbeats: each worker keeps a record of itself in the task-queue backend.

Every ``INTERVAL`` seconds a running worker writes a :class:`WorkerInfo` (identity, what it
runs, how much it has done) as a ``worker`` record; a graceful stop deletes it. A worker that
died leaves a record whose ``last_seen`` stops moving: :func:`list_workers` reports only workers
seen within ``3 * INTERVAL`` (and drops records stale for an hour).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

import msgspec

from omniq.models import utcnow

__all__ = ["INTERVAL", "WorkerInfo", "list_workers"]

logger = logging.getLogger("omniq.worker")

KIND = "worker"
INTERVAL = 5.0
_FORGET_AFTER = timedelta(hours=1)


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``omniq status`` shows of a live worker."""

    worker_id: str
    worker_type: str
    host: str
    pid: int
    queues: list[str] | None
    max_workers: int
    started_at: datetime
    last_seen: datetime
    running: list[str] = []
    processed: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerInfo)


class Heartbeat:
    """Writes one worker's record while it runs."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.started_at = utcnow()

    def info(self) -> WorkerInfo:
        worker = self.worker
        return WorkerInfo(
            worker_id=worker.worker_id,
            worker_type=worker.kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=worker._watched,
            max_workers=worker.max_workers,
            started_at=self.started_at,
            last_seen=utcnow(),
            running=sorted(worker._running),
            processed=worker.processed,
        )

    async def run(self) -> None:
        self.started_at = utcnow()
        while True:
            try:
                await self.worker.queue.put_record(
                    KIND, self.worker.worker_id, _encoder.encode(self.info())
                )
            except Exception:
                logger.warning("writing the worker heartbeat failed", exc_info=True)
            await asyncio.sleep(INTERVAL)

    async def remove(self) -> None:
        try:
            await self.worker.queue.delete_record(KIND, self.worker.worker_id)
        except Exception:
            logger.warning("removing the worker heartbeat failed", exc_info=True)


async def list_workers(queue: Any) -> list[WorkerInfo]:
    """The workers of ``queue``'s project seen within the last ``3 * INTERVAL`` seconds."""
    now = utcnow()
    live = []
    for key, _, data in await queue.list_records(KIND):
        try:
            info = _decoder.decode(data)
        except msgspec.DecodeError:
            continue
        age = now - info.last_seen
        if age <= timedelta(seconds=3 * INTERVAL):
            live.append(info)
        elif age > _FORGET_AFTER:
            await queue.delete_record(KIND, key)
    return live
