"""The file task queue's engine, part 1: shared state, reading task files, finding a task,
moving it, idempotency keys. :mod:`.queue` documents the layout and the crash
reasoning; everything here blocks and runs in worker threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import NamedTuple

import msgspec

from omniq._corrupt import CorruptField, check, stand_in
from omniq.backends.file import layout as L
from omniq.backends.file.store import Store, safe_name
from omniq.errors import StorageError
from omniq.models import CLAIMABLE, FINAL, Task, TaskStatus, utcnow

__all__ = ["FINISH_GRACE", "KEY_GRACE", "Found", "TaskCore", "in_move"]

log = logging.getLogger("omniq.backends.file.queue")

FINISH_GRACE = 60.0  # seconds a mover may take between its two renames before a rescue
KEY_GRACE = 5.0  # seconds a fresh key may point at a task that is still being written
RELIST = 1.0  # seconds a cached directory listing is trusted
MOVES = 8  # attempts to catch a task that keeps moving between directories


class Shared:
    """Per-location state shared by every queue object of this process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # serializes this process's claims, moves and cache use
        self.generation = 0  # bumped whenever this process makes a task claimable
        self.next_scan = 0.0  # epoch seconds: when running/ may next hold a lapsed lease
        self.listings: dict[str, object] = {}  # queue dir -> cached pending listing
        self.qdirs: tuple[float, int, list[str]] | None = None
        self.workers: dict[str, str] = {}  # worker hash -> worker id
        self.ready = False


_shared: dict[tuple[str, str], Shared] = {}
_shared_guard = threading.Lock()


def _reset_after_fork() -> None:
    global _shared_guard
    _shared_guard = threading.Lock()
    _shared.clear()  # fresh locks and caches for the objects the child creates


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class Found(NamedTuple):
    kind: str  # pending | running | finishing | done
    rel: str
    seq: int
    task: Task  # as it stands now (running fields from the file name)


class TaskCore:
    """Reading, locating and moving tasks in one project directory."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with _shared_guard:
            self.shared = _shared.setdefault((store.url, store.base), Shared())

    def _ready(self) -> None:
        if self.shared.ready:
            return
        for rel in (L.PENDING, L.RUNNING, L.FINISHING, L.DONE, L.KEYS, L.WORKERS, "tmp"):
            self.store.makedirs(rel)
        self.store.sweep_tmp(3600.0)
        self.shared.ready = True

    def made_claimable(self) -> None:
        with self.shared.lock:
            self.shared.generation += 1

    # --- reading -----------------------------------------------------------------------------

    def _record(self, rel: str) -> tuple[L.Record | None, str | None, bool]:
        """(record, error, exists): a file that does not decode gives (None, why, True)."""
        data = self.store.read(rel)
        if data is None:
            return None, None, False
        try:
            record = L.decode_record(data)
            check(record.task)
        except (msgspec.DecodeError, CorruptField) as exc:
            return None, f"task file {rel}: {exc}", True
        return record, None, True

    def _view(
        self,
        record: L.Record | None,
        error: str | None,
        eid: str,
        *,
        queue: str = "default",
        prio: int | None = None,
        status: TaskStatus = TaskStatus.PENDING,
        attempts: int = 0,
    ) -> Task:
        if record is not None:
            return record.task
        # An undecodable file: what the names tell, in a stand-in that the worker fails.
        return stand_in(
            L.task_id_of(eid),
            error or "undecodable task file",
            queue_name=queue,
            priority=0 if prio is None else L.priority_of(prio),
            status=status,
            attempts=attempts,
        )

    def _running_view(self, task: Task, r: L.Running) -> Task:
        return task.evolve(
            status=TaskStatus.RUNNING,
            attempts=r.attempts,
            lease_until=L.dt(r.lease_us),
            started_at=L.dt(r.started_us) if r.started_us else None,
            worker_id=self._worker_id(r.whash),
        )

    def _worker_id(self, whash: str) -> str | None:
        known = self.shared.workers.get(whash)
        if known is None:
            data = self.store.read(f"{L.WORKERS}/{whash}")
            if data is not None:
                known = self.shared.workers[whash] = data.decode("utf-8", "replace")
        return known

    def _register(self, worker_id: str) -> str:
        whash = L.worker_hash(worker_id)
        if self.shared.workers.get(whash) != worker_id:
            self.store.write(f"{L.WORKERS}/{whash}", worker_id.encode())
            self.shared.workers[whash] = worker_id
        return whash

    def _queue_dirs(self, queue: str | None, cached: bool = False) -> list[str]:
        if queue is not None:
            return [safe_name(queue)]
        sh = self.shared
        if cached and sh.qdirs is not None:
            at, generation, names = sh.qdirs
            if generation == sh.generation and time.monotonic() - at < RELIST:
                return names
        names = sorted(self.store.listdir(L.PENDING))
        sh.qdirs = (time.monotonic(), sh.generation, names)
        return names

    # --- locating one task -------------------------------------------------------------------

    def _find(self, eid: str, kinds: str, qdir: str | None, skip: str | None) -> Found | None:
        for kind in kinds:
            if kind == "p":
                for q in [qdir] if qdir else self._queue_dirs(None):
                    for name in self.store.listdir(f"{L.PENDING}/{q}"):
                        p = L.parse_pending(name)
                        if p is None or p.eid != eid:
                            continue
                        rel = f"{L.PENDING}/{q}/{name}"
                        rec, err, ok = self._record(rel)
                        if ok:
                            task = self._view(
                                rec,
                                err,
                                eid,
                                queue=L.task_id_of(q),
                                prio=p.prio,
                                status=p.status,
                                attempts=p.attempts,
                            )
                            return Found("pending", rel, p.seq, task)
            elif kind in "rf":
                folder = L.RUNNING if kind == "r" else L.FINISHING
                for name in self.store.listdir(folder):
                    if not name.startswith(eid + ".") or name == skip:
                        continue
                    e = L.parse_running(name) if kind == "r" else L.parse_finishing(name)
                    if e is None or e.eid != eid:
                        continue
                    rel = f"{folder}/{name}"
                    rec, err, ok = self._record(rel)
                    if not ok:
                        continue
                    task = self._view(rec, err, eid, attempts=e.attempts)
                    if isinstance(e, L.Running):
                        return Found("running", rel, e.seq, self._running_view(task, e))
                    return Found("finishing", rel, e.seq, in_move(task, e))
            else:
                rel = f"{L.DONE}/{eid}"
                rec, err, ok = self._record(rel)
                if ok:
                    task = self._view(rec, err, eid, status=TaskStatus.FAILED)
                    return Found("done", rel, rec.seq if rec else 0, task)
        return None

    def _locate(self, eid: str, qdir: str | None = None, skip: str | None = None) -> Found | None:
        """Where the task is now. Looking in done/ and running/ first is cheap. Otherwise tasks
        move forward (pending, running, finishing, done), so a pass in that order finds one
        moving meanwhile; a few passes catch the rare retry or requeue that moved back."""
        found = self._find(eid, "dr", qdir, skip)
        if found is not None:
            return found
        last = None
        for attempt in range(5):
            found = self._find(eid, "prfd", qdir, skip)
            if found is not None and found.kind != "finishing":
                return found
            if found is not None:
                time.sleep(0.001 * 2**attempt)  # its mover is between two renames: give it time
            last = found or last
        return last

    def get(self, task_id: str) -> Task | None:
        if not task_id:
            return None
        found = self._locate(safe_name(task_id))
        return None if found is None else found.task

    # --- moving: rename out of the old place (the compare-and-set), then write the new state --

    def _home(self, seq: int, task: Task) -> str:
        if task.status in CLAIMABLE:
            return f"{L.PENDING}/{safe_name(task.queue_name)}/{L.pending_name(seq, task)}"
        return f"{L.DONE}/{safe_name(task.id)}"

    def _fin_name(self, eid: str, seq: int, attempts: int) -> str:
        return L.finishing_name(eid, seq, attempts, L.us(utcnow()) + int(FINISH_GRACE * 1e6))

    def _commit(self, fin: str, seq: int, task: Task) -> bool:
        """Write ``task`` to its new home, then drop its finishing entry; True if claimable."""
        self.store.write(self._home(seq, task), L.encode_record(seq, task))
        self.store.unlink(f"{L.FINISHING}/{fin}")
        if task.status in CLAIMABLE:
            self.made_claimable()
            return True
        return False

    # --- idempotency keys --------------------------------------------------------------------

    def _take_key(self, task: Task) -> str | None:
        """Create the key file for ``task``; or return the id of the live task holding it."""
        assert task.key is not None
        rel = f"{L.KEYS}/{safe_name(task.key)}"
        now_us = L.us(utcnow())
        mine = L.encode_key(task.id, now_us, task.queue_name)
        for _ in range(MOVES):
            if self.store.create(rel, mine):
                return None
            data = self.store.read(rel)
            if data is None:
                continue  # removed meanwhile: try to create it again
            try:
                other, created_us, queue = L.decode_key(data)
            except msgspec.DecodeError:
                other, created_us, queue = None, 0, ""
            if other is not None:
                found = self._locate(safe_name(other), safe_name(queue))
                if found is not None and found.task.status not in FINAL:
                    return other
                if found is None and now_us - created_us < KEY_GRACE * 1e6:
                    return other  # its enqueue is writing the task right now
            self._drop_key_file(rel, data)  # its task is final or gone: the key is free
        raise StorageError(f"could not settle idempotency key {task.key!r}: too much contention")

    def _drop_key_file(self, rel: str, expected: bytes) -> None:
        """Remove a key file only if it still holds ``expected`` (moved aside, then checked)."""
        aside = self.store.trash_name()
        if not self.store.rename(rel, aside):
            return
        data = self.store.read(aside)
        if data is not None and data != expected:
            self.store.create(rel, data)  # a newer key slipped in: put it back unless replaced
        self.store.unlink(aside)

    def _drop_key(self, task: Task) -> None:
        if task.key is None:
            return
        rel = f"{L.KEYS}/{safe_name(task.key)}"
        data = self.store.read(rel)
        if data is None:
            return
        try:
            holder = L.decode_key(data)[0]
        except msgspec.DecodeError:
            holder = task.id
        if holder == task.id:
            self._drop_key_file(rel, data)


def in_move(task: Task, f: L.Finishing) -> Task:
    """A task between the two steps of a move: still as it was (its content is from before its
    claim), so a finish in flight shows as the running attempt it is."""
    if task.status in FINAL:
        return task  # a requeue in flight: still final until the new state is written
    return task.evolve(status=TaskStatus.RUNNING, attempts=f.attempts)
