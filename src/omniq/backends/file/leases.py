"""The file task queue's engine, part 2: claim, lease renewal, rescue of lapsed leases, finish.

Each of these is a rename whose success decides the race (see :mod:`.queue`). Pending
listings are cached per process and re-read when this process made a task claimable, when they
run dry, or after a second; a stale entry only costs a failed rename.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Iterable
from typing import NamedTuple

from omniq.backends.file import layout as L
from omniq.backends.file.core import MOVES, RELIST, TaskCore
from omniq.backends.file.store import safe_name
from omniq.models import FINAL, Task

__all__ = ["Leases"]

_SCAN_EVERY = 1.0  # longest gap between scans of running/ and finishing/ for lapsed leases


class _Listing:
    """A snapshot of one queue's pending directory: due tasks by (priority, seq), later ones by
    due time."""

    def __init__(self, names: Iterable[str], now_us: int, generation: int) -> None:
        self.generation, self.fetched = generation, time.monotonic()
        self.due: list[tuple[int, int, L.Pending]] = []
        self.later: list[tuple[int, int, int, L.Pending]] = []
        for name in names:
            p = L.parse_pending(name)
            if p is None:
                continue
            if p.run_us <= now_us:
                self.due.append((p.prio, p.seq, p))
            else:
                self.later.append((p.run_us, p.prio, p.seq, p))
        heapq.heapify(self.due)
        heapq.heapify(self.later)

    def top(self, now_us: int) -> tuple[int, int, L.Pending] | None:
        while self.later and self.later[0][0] <= now_us:
            _, prio, seq, p = heapq.heappop(self.later)
            heapq.heappush(self.due, (prio, seq, p))
        return self.due[0] if self.due else None


class _Candidate(NamedTuple):
    key: tuple[int, int, int]  # queue rank, inverted priority, seq
    rel: str
    eid: str
    seq: int
    attempts: int  # attempts so far; a claim that counts makes it attempts + 1
    record: L.Record | None  # None: read it once taken
    queue: str  # the queue name, for a file that cannot be decoded


class Leases(TaskCore):
    """Claims and leases on one project directory."""

    def claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now_us: int,
        lease_us: int,
        start: int,
    ) -> list[Task]:
        self._ready()
        sh = self.shared
        whash = self._register(worker_id)
        qdirs = [safe_name(q) for q in queues] if queues is not None else None
        claimed: list[Task] = []
        with sh.lock:
            rescued = self._rescue(now_us, qdirs)
            for fresh in (False, True):
                lost = self._claim_round(
                    claimed,
                    rescued,
                    self._listings(qdirs, now_us, fresh),
                    whash,
                    limit,
                    now_us,
                    lease_us,
                    start,
                )
                if not lost or len(claimed) >= limit:
                    break  # a second round, on fresh listings, only after losing races
            if claimed:
                sh.next_scan = min(sh.next_scan, lease_us / 1e6)
        return claimed

    def _claim_round(
        self,
        claimed: list[Task],
        rescued: list[_Candidate],
        listings: list[tuple[int, str, _Listing]],
        whash: str,
        limit: int,
        now_us: int,
        lease_us: int,
        start: int,
    ) -> bool:
        """Take the best candidates until ``limit``; True if some were lost to others."""
        lost = False
        while len(claimed) < limit:
            # (queue rank, inverted priority, seq); the rank is 0 for every queue when none
            # are named, so then priority and FIFO span all queues.
            best = rescued[0].key if rescued else None
            source = -1
            for i, (rank, _, listing) in enumerate(listings):
                top = listing.top(now_us)
                if top is not None and (best is None or (rank, top[0], top[1]) < best):
                    best, source = (rank, top[0], top[1]), i
            if best is None:
                break
            if source < 0:
                cand = rescued.pop(0)
            else:
                _, qdir, listing = listings[source]
                p = heapq.heappop(listing.due)[2]
                cand = _Candidate(
                    best,
                    f"{L.PENDING}/{qdir}/{p.name}",
                    p.eid,
                    p.seq,
                    p.attempts,
                    None,
                    L.task_id_of(qdir),
                )
            # A rescued task always counts: its lost holder may have started it.
            counted = len(claimed) < start or source < 0
            task = self._take(cand, whash, now_us, lease_us, counted)
            if task is None:
                lost = True
            else:
                claimed.append(task)
        return lost

    def _take(
        self, cand: _Candidate, whash: str, now_us: int, lease_us: int, counted: bool
    ) -> Task | None:
        """Rename the candidate into running/ under a new lease: the rename is the claim (one
        that does not count an attempt is marked by a start time of 0)."""
        name = L.running_name(
            cand.eid, cand.seq, cand.attempts + counted, lease_us, now_us if counted else 0, whash
        )
        rel = f"{L.RUNNING}/{name}"
        if not self.store.rename(cand.rel, rel):
            return None  # another claimer won
        record, error = cand.record, None
        if record is None:
            record, error, ok = self._record(rel)
            if not ok:
                return None
        task = self._view(
            record, error, cand.eid, queue=cand.queue, prio=cand.key[1], attempts=cand.attempts
        )
        running = L.parse_running(name)
        assert running is not None
        return self._running_view(task, running)

    def _listings(
        self, qdirs: list[str] | None, now_us: int, fresh: bool
    ) -> list[tuple[int, str, _Listing]]:
        sh = self.shared
        out = []
        names = qdirs if qdirs is not None else self._queue_dirs(None, cached=not fresh)
        for rank, qdir in enumerate(names):
            listing = sh.listings.get(qdir)
            if (
                fresh
                or not isinstance(listing, _Listing)
                or listing.generation != sh.generation
                or time.monotonic() - listing.fetched > RELIST
                or listing.top(now_us) is None
            ):
                listing = _Listing(self.store.listdir(f"{L.PENDING}/{qdir}"), now_us, sh.generation)
                sh.listings[qdir] = listing
            out.append((rank if qdirs is not None else 0, qdir, listing))
        return out

    # --- rescue --------------------------------------------------------------------------------

    def _rescue(self, now_us: int, qdirs: list[str] | None) -> list[_Candidate]:
        """Tasks whose lease lapsed (a lost worker) or whose mover died, as claim candidates."""
        sh = self.shared
        now = now_us / 1e6
        if now < sh.next_scan:
            return []
        next_scan = now + _SCAN_EVERY
        found: list[_Candidate] = []
        for name in self.store.listdir(L.RUNNING):
            r = L.parse_running(name)
            if r is None:
                continue
            if r.lease_us >= now_us:
                next_scan = min(next_scan, r.lease_us / 1e6)
                continue
            cand = self._candidate(f"{L.RUNNING}/{name}", r.eid, r.seq, r.attempts, qdirs)
            if cand is not None:
                found.append(cand)
        for name in self.store.listdir(L.FINISHING):
            f = L.parse_finishing(name)
            if f is None:
                continue
            if f.deadline_us >= now_us:
                next_scan = min(next_scan, f.deadline_us / 1e6)
                continue
            cand = self._settle(f, qdirs)
            if cand is not None:
                found.append(cand)
        sh.next_scan = now if found else next_scan
        found.sort(key=lambda c: c.key)
        return found

    def _candidate(
        self, rel: str, eid: str, seq: int, attempts: int, qdirs: list[str] | None
    ) -> _Candidate | None:
        record, _, ok = self._record(rel)
        if not ok:
            return None
        rank, prio, queue = 0, L.inverted(0), "default"
        if record is not None:
            queue = record.task.queue_name
            if qdirs is not None:
                if safe_name(queue) not in qdirs:
                    return None
                rank = qdirs.index(safe_name(queue))
            prio = L.inverted(record.task.priority)
        # An undecodable file is offered to any claimer, so it gets failed rather than stuck.
        return _Candidate((rank, prio, seq), rel, eid, seq, attempts, record, queue)

    def _settle(self, f: L.Finishing, qdirs: list[str] | None) -> _Candidate | None:
        """A move whose mover died: finish it, undo it, or offer the task for a new run."""
        rel = f"{L.FINISHING}/{f.name}"
        record, _, ok = self._record(rel)
        if not ok:
            return None
        qdir = safe_name(record.task.queue_name) if record is not None else None
        if self._locate(f.eid, qdir, skip=f.name) is not None:
            self.store.unlink(rel)  # the new state was written: only the cleanup was missing
            return None
        if record is not None and record.task.status in FINAL:
            self.store.rename(rel, f"{L.DONE}/{f.eid}")  # an interrupted requeue: undo it
            return None
        return self._candidate(rel, f.eid, f.seq, f.attempts, qdirs)

    # --- holders -------------------------------------------------------------------------------

    def _mine(self, whash: str, eids: set[str]) -> dict[str, list[L.Running]]:
        """The running entries of these tasks held by the worker with this hash."""
        held: dict[str, list[L.Running]] = {}
        suffix = "." + whash
        for name in self.store.listdir(L.RUNNING):
            if not name.endswith(suffix) or name[: name.find(".")] not in eids:
                continue
            r = L.parse_running(name)
            if r is not None and r.whash == whash:
                held.setdefault(r.eid, []).append(r)
        return held

    def renew(self, worker_id: str, task_ids: list[str], lease_us: int) -> list[str]:
        whash = L.worker_hash(worker_id)
        held = []
        eids = {safe_name(task_id) for task_id in task_ids}
        with self.shared.lock:
            mine = self._mine(whash, eids)
            for task_id in task_ids:
                for _ in range(MOVES):
                    entries = mine.get(safe_name(task_id))
                    if not entries:
                        break
                    r = max(entries, key=lambda e: e.attempts)
                    new = L.running_name(r.eid, r.seq, r.attempts, lease_us, r.started_us, whash)
                    if self.store.rename(f"{L.RUNNING}/{r.name}", f"{L.RUNNING}/{new}"):
                        held.append(task_id)
                        break
                    mine = self._mine(whash, eids)  # renamed meanwhile: by us elsewhere, or rescued
        return held

    def mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        """Count the attempts of tasks claimed ahead that started: rename each held entry with
        T=0 and one attempt fewer to the task's attempts and start time."""
        whash = L.worker_hash(worker_id)
        marked = []
        eids = {safe_name(task.id) for task in tasks}
        with self.shared.lock:
            mine = self._mine(whash, eids)
            for task in tasks:
                assert task.started_at is not None
                for _ in range(MOVES):
                    r = next(
                        (
                            e
                            for e in mine.get(safe_name(task.id), ())
                            if e.started_us == 0 and e.attempts == task.attempts - 1
                        ),
                        None,
                    )
                    if r is None:
                        break  # started, rescued, finished or cancelled
                    new = L.running_name(
                        r.eid, r.seq, task.attempts, r.lease_us, L.us(task.started_at), whash
                    )
                    if self.store.rename(f"{L.RUNNING}/{r.name}", f"{L.RUNNING}/{new}"):
                        marked.append(task.id)
                        break
                    mine = self._mine(whash, eids)  # renewed meanwhile, or rescued
        return marked

    def finish(self, worker_id: str, tasks: list[Task]) -> tuple[list[str], bool]:
        whash = L.worker_hash(worker_id)
        written, claimable = [], False
        eids = {safe_name(task.id) for task in tasks}
        with self.shared.lock:
            mine = self._mine(whash, eids)
            for task in tasks:
                eid = safe_name(task.id)
                for _ in range(MOVES):
                    r = next((e for e in mine.get(eid, ()) if e.attempts == task.attempts), None)
                    if r is None:
                        break  # not held: rescued, cancelled, or never ours
                    fin = self._fin_name(eid, r.seq, r.attempts)
                    if self.store.rename(f"{L.RUNNING}/{r.name}", f"{L.FINISHING}/{fin}"):
                        claimable = self._commit(fin, r.seq, task) or claimable
                        written.append(task.id)
                        break
                    mine = self._mine(whash, eids)
        return written, claimable

    def pending_signature(self, queues: list[str] | None) -> tuple[int | None, ...] | None:
        """Modification times of the watched pending directories: any change means another
        process may have added a task. None where the filesystem cannot tell."""
        if self.store.mtime_ns(L.PENDING) is None:
            return None
        qdirs = [safe_name(q) for q in queues] if queues else self._queue_dirs(None, cached=True)
        return tuple(
            self.store.mtime_ns(rel) for rel in [L.PENDING, *(f"{L.PENDING}/{q}" for q in qdirs)]
        )

    def next_wake(self) -> float | None:
        """Epoch seconds when a delayed task or a lease known here falls due (no I/O)."""
        sh = self.shared
        times = [sh.next_scan] if sh.next_scan else []
        for listing in list(sh.listings.values()):
            if isinstance(listing, _Listing):
                with contextlib.suppress(IndexError):  # a claim may pop it meanwhile
                    times.append(listing.later[0][0] / 1e6)
        return min(times) if times else None
