"""File result and event storage, on a local disk or any fsspec filesystem.

Layout, under ``{base_dir}/{project_name}/`` (names percent-encoded)::

    results/<task id>            b"OQR1" + expires_at (int64 µs, -1 = never) + encoded TaskResult
    events/<YYYY-MM-DD>/<S>-<pid>.jsonl
                                 one file per written batch and UTC day: JSON lines of
                                 TaskEvent (plain JSON, never pickles); S orders the batches
    tmp/                         temporary files of atomic writes

Every file is written whole and renamed into place (one PUT on object stores), so readers never
see half a result or half a batch, and event files are never appended to or edited in place —
only replaced whole by :meth:`delete_before`. Cleanup reads just the 12-byte header of each
result. Result waiters in this process are woken at once; other processes' writes are seen by the
base class's periodic re-check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from datetime import UTC, date, datetime
from typing import Unpack

import msgspec

from omniq._notify import channel
from omniq.backends.file import component_store, next_seq, run, safe_name
from omniq.backends.file.layout import us
from omniq.backends.file.options import (
    FileConnection,
    FileEventStorageConfig,
    FileResultStorageConfig,
)
from omniq.config import Settings
from omniq.models import EventType, TaskEvent, TaskResult
from omniq.serialization import Serializer
from omniq.storage.base import AsyncEventStorage, AsyncResultStorage

__all__ = [
    "AsyncFileEventStorage",
    "AsyncFileResultStorage",
]

log = logging.getLogger("omniq.backends.file.storage")

_HEADER = struct.Struct(">4sq")
_MAGIC = b"OQR1"


def _header(expires_at: datetime | None) -> bytes:
    return _HEADER.pack(_MAGIC, -1 if expires_at is None else us(expires_at))


def _expiry(head: bytes | None) -> int | None:
    """Expiry in µs from a result file's header; None for never (or an unreadable header)."""
    if head is None or len(head) < _HEADER.size:
        return None
    magic, expires = _HEADER.unpack_from(head)
    return expires if magic == _MAGIC and expires >= 0 else None


class AsyncFileResultStorage(AsyncResultStorage):
    """Results in files, one per task.

    Args:
        project_name: namespace directory under ``base_dir``.
        base_dir, storage_options: where (:class:`~omniq.backends.file.options.FileConnection`).
        serializer, settings: as for every result storage.
    """

    config_class = FileResultStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        **connection: Unpack[FileConnection],
    ) -> None:
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self._store = component_store(self.project_name, self.settings, **connection)
        self._signal = channel(("file-results", self._store.url, self.project_name))

    @staticmethod
    def _rel(task_id: str) -> str:
        return f"results/{safe_name(task_id)}"

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        files = [(self._rel(r.task_id), _header(r.expires_at) + data) for r, data in results]

        def write_all() -> None:
            for rel, data in files:
                self._store.write(rel, data)

        await run(write_all)
        self._signal.notify(r.task_id for r, _ in results)

    async def _get(self, task_id: str) -> bytes | None:
        if not task_id:
            return None
        data = await run(self._store.read, self._rel(task_id))
        if data is None:
            return None
        return data[_HEADER.size :] if data[:4] == _MAGIC else data

    async def _delete(self, task_id: str) -> bool:
        return bool(task_id) and await run(self._store.unlink, self._rel(task_id))

    async def _delete_expired(self, now: datetime) -> int:
        return await run(self._sweep, us(now))

    def _sweep(self, now_us: int) -> int:
        store, deleted = self._store, 0
        for name in store.listdir("results"):
            rel = f"results/{name}"
            expires = _expiry(store.read(rel, _HEADER.size))
            if expires is None or expires > now_us:
                continue
            # Move it aside first, so a result rewritten meanwhile is put back, not deleted.
            aside = store.trash_name()
            if not store.rename(rel, aside):
                continue
            data = store.read(aside)
            expires = _expiry(data)
            if data is not None and (expires is None or expires > now_us):
                store.create(rel, data)
            else:
                deleted += 1
            store.unlink(aside)
        return deleted

    def _result_signal(self, task_id: str) -> asyncio.Future[None] | None:
        return self._signal.subscribe(task_id)


_event_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(TaskEvent)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day(moment: datetime) -> date:
    return _aware(moment).astimezone(UTC).date()


class AsyncFileEventStorage(AsyncEventStorage):
    """Events as JSON lines, one file per written batch and day.

    Args:
        project_name: namespace directory under ``base_dir``.
        base_dir, storage_options: where (:class:`~omniq.backends.file.options.FileConnection`).
        settings: as for every event storage.
    """

    config_class = FileEventStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        settings: Settings | None = None,
        **connection: Unpack[FileConnection],
    ) -> None:
        super().__init__(project_name=project_name, settings=settings)
        self._store = component_store(self.project_name, self.settings, **connection)

    async def _write_many(self, events: list[TaskEvent]) -> None:
        by_day: dict[date, list[bytes]] = {}
        for event in events:
            by_day.setdefault(_day(event.timestamp), []).append(_event_encoder.encode(event))
        files = [
            (
                f"events/{day.isoformat()}/{next_seq():020d}-{os.getpid()}.jsonl",
                b"\n".join(lines) + b"\n",
            )
            for day, lines in by_day.items()
        ]

        def write_all() -> None:
            for rel, data in files:
                self._store.write(rel, data)

        await run(write_all)

    def _days(self, since: datetime | None, until: datetime | None) -> list[tuple[date, str]]:
        days = []
        for name in self._store.listdir("events"):
            try:
                day = date.fromisoformat(name)
            except ValueError:
                continue
            if (since is None or day >= _day(since)) and (until is None or day <= _day(until)):
                days.append((day, name))
        return sorted(days)

    def _read(self, rel: str) -> list[TaskEvent]:
        data = self._store.read(rel)
        events = []
        for line in (data or b"").splitlines():
            if not line.strip():
                continue
            try:
                event = _event_decoder.decode(line)
            except msgspec.DecodeError as exc:
                log.warning("skipping an unreadable event in %s: %s", rel, exc)
                continue
            events.append(_normalised(event))
        return events

    async def _query(
        self,
        task_id: str | None,
        event_type: EventType | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[TaskEvent]:
        lo = None if since is None else _aware(since)
        hi = None if until is None else _aware(until)

        def scan() -> list[TaskEvent]:
            found: list[tuple[datetime, str, int, TaskEvent]] = []
            for _, day in self._days(lo, hi):
                for name in self._store.listdir(f"events/{day}"):
                    for i, e in enumerate(self._read(f"events/{day}/{name}")):
                        if (
                            (task_id is None or e.task_id == task_id)
                            and (event_type is None or e.type is event_type)
                            and (lo is None or e.timestamp >= lo)
                            and (hi is None or e.timestamp <= hi)
                        ):
                            found.append((e.timestamp, name, i, e))
            found.sort(key=lambda item: item[:3])
            return [item[3] for item in found[: max(0, limit)]]

        return await run(scan)

    async def _delete_before(self, before: datetime) -> int:
        cutoff = _aware(before)

        def delete() -> int:
            removed = 0
            for day, name in self._days(None, cutoff):
                folder = f"events/{name}"
                for file in self._store.listdir(folder):
                    rel = f"{folder}/{file}"
                    events = self._read(rel)
                    kept = [e for e in events if e.timestamp >= cutoff]
                    removed += len(events) - len(kept)
                    if not kept:
                        self._store.unlink(rel)
                    elif len(kept) < len(events):
                        data = b"".join(_event_encoder.encode(e) + b"\n" for e in kept)
                        self._store.write(rel, data)
                if day < _day(cutoff):
                    self._store.rmtree(folder)
            return removed

        return await run(delete)


def _normalised(event: TaskEvent) -> TaskEvent:
    if event.timestamp.tzinfo is not None:
        return event
    return msgspec.structs.replace(event, timestamp=event.timestamp.replace(tzinfo=UTC))
