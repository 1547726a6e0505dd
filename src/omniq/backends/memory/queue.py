"""The in-memory task queue: one process, no persistence; the fastest backend, for tests and
single-process apps.

Layout: ``_tasks`` maps id to the current :class:`Task`; ready tasks sit in one heap per named
queue ordered by (-priority, seq); delayed tasks in a heap by due time; running tasks in a heap by
lease expiry. Heap entries carry a version and are dropped lazily when stale.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from omniq._notify import Signal
from omniq._tasks import wait_within
from omniq.backends.memory.options import MemoryTaskQueueConfig
from omniq.models import Task, TaskStatus
from omniq.queue.base import CLAIMABLE, FINAL, AsyncTaskQueue

__all__ = ["AsyncMemoryTaskQueue"]

_Entry = tuple[Any, ...]


class AsyncMemoryTaskQueue(AsyncTaskQueue):
    """Task queue in this process's memory."""

    config_class = MemoryTaskQueueConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        queues: list[str] | None = None,
        event_store: Any | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            project_name=project_name, queues=queues, event_store=event_store, **kwargs
        )
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._order: dict[str, int] = {}
        self._version: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        self._ready: defaultdict[str, list[_Entry]] = defaultdict(list)
        self._delayed: list[_Entry] = []
        self._leases: list[_Entry] = []
        self._seq = itertools.count()
        self._signal = Signal()
        self._records: dict[tuple[str, str], tuple[int, bytes]] = {}

    # --- index maintenance (call with the lock held) -----------------------------------------

    def _store(self, task: Task) -> None:
        version = self._version.get(task.id, 0) + 1
        self._version[task.id] = version
        self._tasks[task.id] = task
        if task.status in CLAIMABLE:
            entry = (-task.priority, self._order[task.id], task.id, version)
            if task.run_at.timestamp() <= _now_ts():
                heapq.heappush(self._ready[task.queue_name], entry)
            else:
                heapq.heappush(self._delayed, (task.run_at.timestamp(), task.queue_name, *entry))
        elif task.status is TaskStatus.RUNNING and task.lease_until is not None:
            heapq.heappush(self._leases, (task.lease_until.timestamp(), task.id, version))
        if task.key is not None:
            if task.status in FINAL:
                if self._keys.get(task.key) == task.id:
                    del self._keys[task.key]
            else:
                self._keys[task.key] = task.id

    def _promote(self, now_ts: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now_ts:
            _, queue_name, *entry = heapq.heappop(delayed)
            heapq.heappush(self._ready[queue_name], tuple(entry))
        leases = self._leases
        while leases and leases[0][0] < now_ts:
            _, task_id, version = heapq.heappop(leases)
            task = self._tasks.get(task_id)
            if (
                task is not None
                and self._version[task_id] == version
                and task.status is TaskStatus.RUNNING
            ):
                ready = (-task.priority, self._order[task_id], task_id, version)
                heapq.heappush(self._ready[task.queue_name], ready)

    def _live(self, entry: _Entry) -> Task | None:
        task_id, version = entry[2], entry[3]
        if self._version.get(task_id) != version:
            return None
        return self._tasks.get(task_id)

    # --- primitives --------------------------------------------------------------------------

    async def _insert(self, tasks: list[Task]) -> list[str]:
        ids = []
        with self._lock:
            for task in tasks:
                existing = self._keys.get(task.key) if task.key is not None else None
                if existing is not None:
                    ids.append(existing)
                    continue
                self._order[task.id] = next(self._seq)
                self._store(task)
                ids.append(task.id)
        self._signal.notify()
        return ids

    async def _get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def _claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        claimed: list[Task] = []
        with self._lock:
            self._promote(now.timestamp())
            names = queues if queues is not None else list(self._ready)
            while len(claimed) < limit:
                heap = self._pick_heap(names, queues is None)
                if heap is None:
                    break
                task = self._live(heapq.heappop(heap))
                if task is None:
                    continue
                if task.status is TaskStatus.RUNNING and (
                    task.lease_until is None or task.lease_until >= now
                ):
                    continue
                counted = len(claimed) < start or task.status is TaskStatus.RUNNING
                task = task.evolve(
                    status=TaskStatus.RUNNING,
                    worker_id=worker_id,
                    lease_until=lease_until,
                    attempts=task.attempts + counted,
                    started_at=now if counted else None,
                )
                self._store(task)
                claimed.append(task)
        return claimed

    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        marked = []
        with self._lock:
            for new in tasks:
                task = self._tasks.get(new.id)
                if (
                    task is not None
                    and task.status is TaskStatus.RUNNING
                    and task.worker_id == worker_id
                    and task.started_at is None
                    and task.attempts == new.attempts - 1
                ):
                    self._store(task.evolve(attempts=new.attempts, started_at=new.started_at))
                    marked.append(new.id)
        return marked

    def _pick_heap(self, names: list[str], merged: bool) -> list[_Entry] | None:
        if not merged:
            for name in names:
                heap = self._ready.get(name)
                if heap:
                    return heap
            return None
        best: list[_Entry] | None = None
        for name in names:
            heap = self._ready.get(name)
            if heap and (best is None or heap[0] < best[0]):
                best = heap
        return best

    async def _renew(self, worker_id: str, task_ids: list[str], lease_until: datetime) -> list[str]:
        held = []
        with self._lock:
            for task_id in task_ids:
                task = self._tasks.get(task_id)
                if (
                    task is not None
                    and task.status is TaskStatus.RUNNING
                    and task.worker_id == worker_id
                ):
                    self._store(task.evolve(lease_until=lease_until))
                    held.append(task_id)
        return held

    async def _finish(self, worker_id: str, tasks: list[Task]) -> list[str]:
        written = []
        with self._lock:
            for new in tasks:
                task = self._tasks.get(new.id)
                if (
                    task is not None
                    and task.status is TaskStatus.RUNNING
                    and task.worker_id == worker_id
                    and task.attempts == new.attempts
                ):
                    self._store(new)
                    written.append(new.id)
        if any(t.status in CLAIMABLE for t in tasks):
            self._signal.notify()
        return written

    async def _transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], **changes: Any
    ) -> Task | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.status not in from_statuses:
                return None
            task = task.evolve(**changes)
            self._store(task)
        if task.status in CLAIMABLE:
            self._signal.notify()
        return task

    async def _list(
        self, queue_name: str | None, status: TaskStatus | None, limit: int
    ) -> list[Task]:
        with self._lock:
            tasks = [t for t in self._tasks.values() if _matches(t, queue_name, status)]
        tasks.sort(key=lambda t: self._order[t.id])
        return tasks[:limit]

    async def _count(self, queue_name: str | None, status: TaskStatus | None) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if _matches(t, queue_name, status))

    async def _purge(self, queue_name: str | None) -> int:
        with self._lock:
            doomed = [
                t.id
                for t in self._tasks.values()
                if t.status is not TaskStatus.RUNNING
                and (queue_name is None or t.queue_name == queue_name)
            ]
            for task_id in doomed:
                task = self._tasks.pop(task_id)
                self._version.pop(task_id, None)
                self._order.pop(task_id, None)
                if task.key is not None and self._keys.get(task.key) == task_id:
                    del self._keys[task.key]
        return len(doomed)

    async def _get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        return self._records.get((kind, key))

    async def _list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        with self._lock:
            found = [(k, *record) for (c, k), record in self._records.items() if c == kind]
        return sorted(found)

    async def _put_record(self, kind: str, key: str, data: bytes) -> int:
        with self._lock:
            version = self._records.get((kind, key), (0, b""))[0] + 1
            self._records[(kind, key)] = (version, data)
        return version

    async def _swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        with self._lock:
            if self._records.get((kind, key), (0, b""))[0] != version:
                return None
            self._records[(kind, key)] = (version + 1, data)
        return version + 1

    async def _delete_record(self, kind: str, key: str) -> bool:
        with self._lock:
            return self._records.pop((kind, key), None) is not None

    async def wait_for_tasks(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        future = self._signal.subscribe()
        with self._lock:
            if self._delayed:
                timeout = max(0.0, min(timeout, self._delayed[0][0] - _now_ts()))
            if self._leases:
                timeout = max(0.0, min(timeout, self._leases[0][0] - _now_ts()))
        await wait_within(future, timeout)


def _matches(task: Task, queue_name: str | None, status: TaskStatus | None) -> bool:
    return (queue_name is None or task.queue_name == queue_name) and (
        status is None or task.status is status
    )


def _now_ts() -> float:
    import time

    return time.time()
