"""The index of WAITING tasks: listing them (the dependency resolver does it every second,
maintenance every few seconds) reads those tasks, not every task of the project.

An entry is a record (:mod:`.records`) of kind ``omniq-waiting`` keyed by task id,
``<p>.omniq-waiting.<id>`` in ``omniq_records``, whose data is msgpack ``[created_us, task key,
written_at]``: the task's ``created_at`` in microseconds (the listing order), its key in
``omniq_tasks`` (a direct get, and its queue without a get) and the writer's clock (``time.time``).
Tasks created together (one ``enqueue_many``) share ``created_at``: the listing keeps them in the
order their entries were written, which is the order they were enqueued.

Invariant: every WAITING task has an entry. An entry without a WAITING task is only stale.

- An entry is written *before* its task is stored WAITING (an insert, or a transition into
  WAITING), so a crash in between leaves at worst an entry without a task.
- A listing reads the entries of the queue, gets their tasks (a batch of direct gets, oldest
  first, until it has ``limit``) and keeps those still WAITING. A task never becomes WAITING
  again without a new entry, so the entries of tasks that left WAITING are deleted then; an entry
  without a task only when older than ``ORPHAN_GRACE_S`` (its enqueue may be storing the task
  right now, or a keyed enqueue completing it: :mod:`.keys`, within 120 s).
- A transition out of WAITING and a purge delete the entry too (best effort). Deletes are purge
  markers that expire after one second: a listing reads few of them.
- Safety net (tasks stored WAITING by an OmniQ without this index, or by any path that missed
  its entry): a full scan of the project's tasks adds the missing entries, at most once per
  ``RECONCILE_S`` per project, claimed by a compare-and-set on the record
  ``omniq-index/waiting`` (the time of the last scan). A queue object that first inserts into a
  project without tasks writes that record, so a new project starts without a scan.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

import msgspec

from omniq.backends.nats import records
from omniq.backends.nats.client import Client
from omniq.backends.nats.keys import decode_status, decode_task
from omniq.backends.nats.layout import RECORDS_BUCKET, TASKS_BUCKET, token
from omniq.errors import StorageError
from omniq.models import Task, TaskStatus

__all__ = ["KIND", "ORPHAN_GRACE_S", "RECONCILE_S", "WaitingIndex"]

logger = logging.getLogger("omniq.nats")

KIND = "omniq-waiting"
ORPHAN_GRACE_S = 300.0  # > the 120 s within which a keyed enqueue completes a half-stored task
RECONCILE_S = 600.0  # the safety-net scan, per project
_CHECK_S = 60.0  # how often a queue object looks whether the safety-net scan is due
_MARK = ("omniq-index", "waiting")
_DROP_MARKER_TTL = "1s"
_FETCH = 1000  # direct gets per batch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _Entry(msgspec.Struct, array_like=True):
    created_us: int
    task_key: str
    written_at: float


_encode = msgspec.msgpack.Encoder().encode
_decode_entry = msgspec.msgpack.Decoder(_Entry).decode
_decode_time = msgspec.msgpack.Decoder(float).decode


class WaitingIndex:
    """The waiting index of one project, as one queue object uses it."""

    def __init__(self, project_token: str) -> None:
        self._p = project_token
        self._started = False  # looked whether the project is new (first insert)
        self._next_check = 0.0  # loop-independent monotonic time of the next safety-net look

    async def start(self, client: Client) -> None:
        """Before this object's first insert: mark a project without tasks as fully indexed
        (so its first listing does not scan)."""
        if self._started:
            return
        mark = await records.get(client, self._p, *_MARK)
        if (
            mark is None
            and await client.kv_find(TASKS_BUCKET, f"{self._p}.*.*.*", markers=True) is None
        ):
            await records.write(client, self._p, *_MARK, _encode(time.time()), 0)
        self._started = True

    async def add(self, client: Client, tasks: list[tuple[str, Task]]) -> None:
        """Write the entries of ``(task key, task)`` (before storing the tasks WAITING)."""
        now = time.time()
        writes = [
            records.put_write(
                self._p,
                KIND,
                task.id,
                _encode(_Entry((task.created_at - _EPOCH) // _US, key, now)),
            )
            for key, task in tasks
        ]
        for outcome in await client.kv_write_many(RECORDS_BUCKET, writes):
            if isinstance(outcome, StorageError):
                raise outcome

    async def drop(self, client: Client, task_ids: list[str]) -> None:
        """Delete the entries of tasks that are no longer WAITING (best effort)."""
        if not task_ids:
            return
        writes = [records.delete_write(self._p, KIND, i, _DROP_MARKER_TTL) for i in task_ids]
        try:
            await client.kv_write_many(RECORDS_BUCKET, writes)
        except StorageError as exc:  # a listing deletes them later
            logger.debug("deleting %d waiting-index entries failed: %r", len(writes), exc)

    async def list(self, client: Client, queue_name: str | None, limit: int) -> list[Task]:
        """Up to ``limit`` WAITING tasks (of ``queue_name``, unless None), oldest first."""
        await self._reconcile_if_due(client)
        queue = None if queue_name is None else token(queue_name)
        found: list[tuple[int, str, _Entry]] = []
        stale: list[str] = []
        # In write order: entries written together (one enqueue_many) keep their order below.
        for task_id, _, data in await records.list_kind(client, self._p, KIND, by_key=False):
            try:
                entry = _decode_entry(data)
            except msgspec.DecodeError:
                stale.append(task_id)
                continue
            if queue is None or entry.task_key.split(".")[2] == queue:
                found.append((entry.created_us, task_id, entry))
        found.sort(key=lambda item: item[0])  # oldest first; ties: the order of enqueueing
        tasks: list[Task] = []
        now = time.time()
        for start in range(0, len(found), _FETCH):
            if len(tasks) >= limit:
                break
            part = found[start : start + _FETCH]
            stored = await client.kv_get_many(TASKS_BUCKET, [e.task_key for _, _, e in part])
            for (_, task_id, entry), got in zip(part, stored, strict=True):
                if got is None:
                    if now - entry.written_at > ORPHAN_GRACE_S:
                        stale.append(task_id)  # its enqueue died, or the task was purged
                    continue
                task = decode_task(got.value, got.key)
                if task.status is TaskStatus.WAITING:
                    tasks.append(task)
                else:
                    stale.append(task_id)
        await self.drop(client, stale)
        return tasks[:limit]

    async def _reconcile_if_due(self, client: Client) -> None:
        if time.monotonic() < self._next_check:
            return
        mark = await records.get(client, self._p, *_MARK)
        now = time.time()
        if mark is None or now - _decode_time(mark[1]) >= RECONCILE_S:
            version = 0 if mark is None else mark[0]
            # Claimed before the scan: one process per project scans; if it dies, the next
            # scan comes RECONCILE_S later.
            if await records.write(client, self._p, *_MARK, _encode(now), version) is not None:
                await self.reconcile(client)
        self._next_check = time.monotonic() + _CHECK_S

    async def reconcile(self, client: Client) -> int:
        """Add the missing entries of WAITING tasks (a scan of every task of the project);
        returns how many were missing."""
        indexed = {task_id for task_id, _, _ in await records.list_kind(client, self._p, KIND)}
        missing = []
        for stored in await client.kv_scan(TASKS_BUCKET, f"{self._p}.*.*.*"):
            with contextlib.suppress(msgspec.DecodeError):
                if decode_status(stored.value) is TaskStatus.WAITING:
                    task = decode_task(stored.value, stored.key)
                    if task.id not in indexed:
                        missing.append((stored.key, task))
        if missing:
            logger.info("waiting index: adding %d missing entries", len(missing))
            await self.add(client, missing)
        return len(missing)
