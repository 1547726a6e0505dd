"""The file task queue's engine, part 3: inserting, state changes by id, listing and purging.
See :mod:`.queue` for the layout and the crash reasoning.
"""

from __future__ import annotations

import time
from typing import Any

from omniq.backends.file import layout as L
from omniq.backends.file.core import MOVES, in_move
from omniq.backends.file.leases import Leases
from omniq.backends.file.store import next_seq, safe_name
from omniq.errors import ConfigError
from omniq.models import CLAIMABLE, Task, TaskStatus

__all__ = ["TaskDir"]


class TaskDir(Leases):
    """All task-queue operations on one project directory, blocking."""

    def insert(self, tasks: list[Task]) -> tuple[list[str], bool]:
        """Store tasks, each file written atomically; returns the ids and whether any is
        claimable. A key is created before its task file (see ``KEY_GRACE``)."""
        self._ready()
        ids: list[str] = []
        by_key: dict[str, str] = {}
        writes: list[tuple[str, bytes]] = []
        claimable = False
        for task in tasks:
            if not task.id:
                raise ConfigError("task id must be a non-empty string")
            if task.key is not None:
                existing = by_key.get(task.key) or self._take_key(task)
                if existing is not None:
                    ids.append(existing)
                    by_key[task.key] = existing
                    continue
                by_key[task.key] = task.id
            seq = next_seq()
            writes.append((self._home(seq, task), L.encode_record(seq, task)))
            claimable = claimable or task.status in CLAIMABLE
            ids.append(task.id)
        for rel, data in writes:
            self.store.write(rel, data)
        if claimable:
            self.made_claimable()
        return ids, claimable

    def transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], changes: dict[str, Any]
    ) -> tuple[Task | None, bool]:
        """Apply ``changes`` if the status is one of ``from_statuses``: (new task, claimable)."""
        if not task_id:
            return None, False
        self._ready()
        eid = safe_name(task_id)
        with self.shared.lock:
            for _ in range(MOVES):
                found = self._locate(eid)
                if found is None:
                    return None, False
                if found.kind == "finishing":
                    time.sleep(0.002)  # another process is between the two renames of a move
                    continue
                if found.task.status not in from_statuses:
                    return None, False
                new = found.task.evolve(**changes)
                fin = self._fin_name(eid, found.seq, found.task.attempts)
                if self.store.rename(found.rel, f"{L.FINISHING}/{fin}"):
                    return new, self._commit(fin, found.seq, new)
                # moved meanwhile (claimed, finished): look again
        return None, False

    # --- inspection ------------------------------------------------------------------------------

    def _scan(
        self, queue: str | None, status: TaskStatus | None, read: bool
    ) -> dict[str, tuple[int, Task | None]]:
        """eid -> (seq, task) of matching tasks; ``read=False`` skips reads names can answer.

        A snapshot, not atomic: a task moving meanwhile is counted once (first place seen)."""
        found: dict[str, tuple[int, Task | None]] = {}
        self._scan_pending(found, queue, status, read)
        if status in (None, TaskStatus.RUNNING):
            self._scan_running(found, queue, read)
        if status is None or status not in (TaskStatus.RUNNING, *CLAIMABLE):
            self._scan_done(found, queue, status, read)
        return found

    def _scan_pending(
        self,
        found: dict[str, tuple[int, Task | None]],
        queue: str | None,
        status: TaskStatus | None,
        read: bool,
    ) -> None:
        for qdir in self._queue_dirs(queue):
            for name in self.store.listdir(f"{L.PENDING}/{qdir}"):
                p = L.parse_pending(name)
                if p is None or (status is not None and p.status is not status):
                    continue
                task = None
                if read:
                    rec, err, ok = self._record(f"{L.PENDING}/{qdir}/{name}")
                    if not ok:
                        continue
                    task = self._view(
                        rec,
                        err,
                        p.eid,
                        queue=L.task_id_of(qdir),
                        prio=p.prio,
                        status=p.status,
                        attempts=p.attempts,
                    )
                found.setdefault(p.eid, (p.seq, task))

    def _scan_running(
        self, found: dict[str, tuple[int, Task | None]], queue: str | None, read: bool
    ) -> None:
        """Running tasks and those between the two renames of a move."""
        for folder in (L.RUNNING, L.FINISHING):
            for name in self.store.listdir(folder):
                e = L.parse_running(name) if folder == L.RUNNING else L.parse_finishing(name)
                if e is None or e.eid in found:
                    continue
                task = None
                if read or queue is not None:
                    rec, err, ok = self._record(f"{folder}/{name}")
                    if not ok:
                        continue
                    task = self._view(rec, err, e.eid, attempts=e.attempts)
                    if isinstance(e, L.Running):
                        task = self._running_view(task, e)
                    else:
                        task = in_move(task, e)
                    if queue is not None and task.queue_name != queue:
                        continue
                found[e.eid] = (e.seq, task)

    def _scan_done(
        self,
        found: dict[str, tuple[int, Task | None]],
        queue: str | None,
        status: TaskStatus | None,
        read: bool,
    ) -> None:
        """Final tasks: their status is only in the file, so any filter reads it."""
        for eid in self.store.listdir(L.DONE):
            if eid in found:
                continue
            task, seq = None, 0
            if read or queue is not None or status is not None:
                rec, err, ok = self._record(f"{L.DONE}/{eid}")
                if not ok:
                    continue
                seq = rec.seq if rec else 0
                task = self._view(rec, err, eid, status=TaskStatus.FAILED)
                if (queue is not None and task.queue_name != queue) or (
                    status is not None and task.status is not status
                ):
                    continue
            found[eid] = (seq, task)

    def list(self, queue: str | None, status: TaskStatus | None, limit: int) -> list[Task]:
        ordered = sorted(self._scan(queue, status, read=True).values(), key=lambda v: v[0])
        return [task for _, task in ordered[: max(0, limit)] if task is not None]

    def count(self, queue: str | None, status: TaskStatus | None) -> int:
        return len(self._scan(queue, status, read=False))

    def purge(self, queue: str | None) -> int:
        """Delete pending and finished tasks (never running ones) and free their keys."""
        purged = 0
        with self.shared.lock:
            doomed = [
                f"{L.PENDING}/{qdir}/{name}"
                for qdir in self._queue_dirs(queue)
                for name in self.store.listdir(f"{L.PENDING}/{qdir}")
                if L.parse_pending(name) is not None
            ]
            doomed += [f"{L.DONE}/{eid}" for eid in self.store.listdir(L.DONE)]
            for rel in doomed:
                rec, _, ok = self._record(rel)
                if not ok or (
                    rel.startswith(L.DONE)
                    and queue is not None
                    and (rec is None or rec.task.queue_name != queue)
                ):
                    continue
                if self.store.unlink(rel):  # fails if claimed meanwhile: then it is running
                    purged += 1
                    if rec is not None:
                        self._drop_key(rec.task)
            self.shared.listings.clear()
        return purged
