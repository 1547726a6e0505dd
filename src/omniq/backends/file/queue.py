"""The file task queue: one file per task on a local disk or any fsspec filesystem.

Layout, under ``{base_dir}/{project_name}/queue/`` (names percent-encoded, so no name holds a
``/`` or a ``.``; ``<id>`` is the encoded task id, ``S`` the insertion sequence number)::

    pending/<queue>/<P>-<S>-<R>.<st><A>.<id>   claimable: P inverted priority (20 digits), S (20
                                              digits), R run_at in µs, st p|r (PENDING|RETRYING),
                                              A attempts so far. A sorted listing is claim order;
                                              R keeps delayed tasks out until due.
    running/<id>.<S>.<A>.<L>.<T>.<W>           claimed: A attempts (this one included), L lease end
                                              and T start in µs (0: claimed ahead, not started,
                                              not counted in A), W hash of the worker id. The
                                              NAME is the lease; the content is left as it was.
    finishing/<id>.<S>.<A>.<D>                 a task between two renames of a move (finish,
                                              cancel, requeue); D: deadline for its mover (60 s).
    done/<id>                                  final: SUCCESS, FAILED, CANCELLED, EXPIRED.
    keys/<key>                                 idempotency key -> (task id, created, queue),
                                              created exclusively.
    workers/<W>                                the worker id behind a hash.
    records/<kind>/<key>                       a record (schedules, worker heartbeats):
                                              ``msgpack([key, version, data])``. Kind and key
                                              names keep upper case apart (%XX) on
                                              case-insensitive disks; long keys are a digest.
    records/<kind>.lock                        the lock file of that kind's record writes.
    ../tmp/                                    temporary files of atomic writes.

Every task file holds ``msgpack([S, Task])``; it is written whole to ``tmp/`` and renamed into
place, so no reader sees half a file. Pending files are never rewritten: a state change is a new
file elsewhere.

Operations, each a ``rename`` whose success decides a race (POSIX rename is atomic: of several
processes renaming one source, exactly one succeeds, the others get "not found"):

- claim: rename ``pending/q/<name>`` to ``running/<id>.S.A+1.L.T.W``, then read it. Losers try
  the next candidate. A running entry whose L has passed is claimed again the same way (renamed
  to a new running name with A+1), so two rescuers cannot both take it. A task claimed ahead
  gets A and T=0; when it starts, its holder renames it to A+1 and T (``mark_started``).
- renew: rename the running entry to the same name with a later L; it fails once the entry was
  rescued, finished or cancelled, so the worker learns it lost the task.
- finish (and cancel, requeue): rename the entry (matching id, A and W for finish) to
  ``finishing/``, the compare-and-set; write the new state to ``done/<id>`` or back to
  ``pending/`` (a retry keeps its S, so its FIFO place); unlink the finishing entry.

Crashes between any two steps:

- during an insert: the key file may exist without its task; after ``KEY_GRACE`` (5 s) such a
  key counts as free. The task file itself appears whole or not at all.
- after a claim rename: the running entry holds the pending content; its name says RUNNING with
  a lease, so it is claimed again once L passes, with A+1 (a lost run counts as an attempt).
- after the finish rename, before the write: the task sits in ``finishing/`` with its previous
  content (readers show it as the running attempt it was); past D a claimer rescues it as a new
  attempt. An interrupted cancel is thus not applied (the task runs), and an interrupted
  requeue of a final task is undone (back to ``done/``).
- after the write, before the unlink: the new state is in place; a rescuer finds the task
  elsewhere and only deletes the finishing entry.

So a task is never lost: it is always in ``pending/``, ``running/``, ``finishing/`` or
``done/``, and everything but ``done/`` comes back to a claimer. It is never claimable twice
while its lease lives: the only ways out of ``running/`` are the one winning rename of the
holder's exact name or, after L, of a rescuer. (A process frozen for longer than D between the
two renames of a finish could still write its stale outcome next to the rescuer's run: as with
any lease, one stalled past its term can run twice.)

Records (``put_record``, ``swap_record``, ...) are small documents beside the tasks; a swap is
the compare-and-set that fires each scheduled run once, so it must be exact. A record is one
file, only ever replaced whole (written to ``tmp/``, renamed over it): readers take no lock and
see one version or the next. A write holds the kind's lock from reading the stored version to
replacing the file with version + 1 (or unlinking it): of several swaps from one version, the
first to get the lock writes, and the others then read the new version and return None. On a
local disk the lock is ``flock`` on ``records/<kind>.lock``, exclusive between processes and
between threads alike (each holder opens the file anew). A rename alone, as for claims, cannot
do it: the version and the data must change in one step, and renaming the record aside first
would leave a moment where it looks absent (and a swap from 0 would win). One lock per kind,
not per key: a lock file can never be deleted (a writer waiting on the unlinked file would no
longer exclude the next one), so lock files must not pile up with keys; each write holds it for
one small read and one small write.

Crashes in a record write:

- while holding the lock: the kernel releases an ``flock`` when its holder's file is closed,
  at exit too, so there is no stale lock and nothing to wait out. (A process that is frozen
  while holding it, not dead, stalls that kind's writers: they fail with a StorageError after
  30 s. Should a holder die with a child it forked meanwhile alive, the child's copy of the
  file keeps the lock until the child exits.)
- after writing the temporary file, before the rename: the record is unchanged, the swap did
  not happen and no one was told it did; the temporary file is swept an hour later.
- after the rename, before releasing the lock or returning: the new version is in place, whole,
  and its writer dies without acting on it. The rename is the one commit point: no state shows
  a new version with old data, or no record at all.

Wake-ups: writers in this process notify waiting workers at once; on a local disk a waiter also
watches the modification times of the pending directories (every 50 ms), so other processes'
tasks are seen promptly; elsewhere they are seen at the worker's next poll. Claimers cache each
queue's sorted listing and re-read it when this process made a task claimable, when it runs
dry, after a second, or after losing a race; a stale entry costs one failed rename.

Limits: ``rename`` is atomic across processes on a local disk (one host; not NFS) and on S3,
where conditional writes decide it and a lock object stands for ``flock`` (:mod:`.s3`; a mover
killed between its copy and its delete leaves a duplicate, so that task may run twice, and a
record lock whose holder died waits out its 30 s expiry). For ``memory://``, ``gs://``,
``az://`` and other fsspec filesystems every operation holds one in-process lock, so one process
may use them with any number of threads and queue objects, but several processes claiming from
one bucket may double-claim, and two of them can both win one record swap (a scheduled run
fired twice): keep one process per bucket there. Files are not fsynced: a process crash loses
nothing, a power cut may lose the last writes (and undo the last swaps: a run may then fire
again). Inserts are atomic per task, not per batch. On case-insensitive filesystems queue names
that differ only in case share a directory.
``get_task`` of a pending task lists its queue directories; ``list_tasks``, and ``count`` by
queue or by a final status, read every finished task file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Unpack

from omniq._notify import channel
from omniq.backends.file import RecordDir, TaskDir, component_store, run
from omniq.backends.file.layout import us
from omniq.backends.file.options import FileConnection, FileTaskQueueConfig
from omniq.config import Settings
from omniq.models import Task, TaskStatus
from omniq.queue.base import AsyncTaskQueue
from omniq.serialization import Serializer

__all__ = ["AsyncFileTaskQueue"]

_WATCH_EVERY = 0.05  # seconds between looks at the pending directories of a local disk


class AsyncFileTaskQueue(AsyncTaskQueue):
    """Task queue in files: a local directory or an fsspec URL (``memory://``, ``s3://``, ...).

    Args:
        project_name: namespace directory under ``base_dir``; projects never see each other.
        base_dir, storage_options: where (:class:`~omniq.backends.file.options.FileConnection`).
        queues: the named queues this object accepts and claims from, first = highest.
        serializer, settings: as for every queue.
        event_store: where an ENQUEUED event of each stored task goes (default: none).
    """

    config_class = FileTaskQueueConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        queues: Sequence[str] | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        event_store: Any | None = None,
        **connection: Unpack[FileConnection],
    ) -> None:
        super().__init__(
            project_name=project_name,
            queues=queues,
            serializer=serializer,
            settings=settings,
            event_store=event_store,
        )
        store = component_store(self.project_name, self.settings, **connection)
        self.networked = not store.local and not store.url.startswith("memory://")
        self._dir = TaskDir(store)
        self._records = RecordDir(store)
        self._channel = channel(("file-queue", store.url, self.project_name))

    def _woke(self, claimable: bool) -> None:
        if claimable:
            self._channel.notify()

    async def _insert(self, tasks: list[Task]) -> list[str]:
        ids, claimable = await run(self._dir.insert, tasks)
        self._woke(claimable)
        return ids

    async def _get(self, task_id: str) -> Task | None:
        return await run(self._dir.get, task_id)

    async def _claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        if limit <= 0:
            return []
        return await run(self._dir.claim, worker_id, queues, limit, us(now), us(lease_until), start)

    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        return await run(self._dir.mark_started, worker_id, tasks)

    async def _renew(self, worker_id: str, task_ids: list[str], lease_until: datetime) -> list[str]:
        return await run(self._dir.renew, worker_id, task_ids, us(lease_until))

    async def _finish(self, worker_id: str, tasks: list[Task]) -> list[str]:
        written, claimable = await run(self._dir.finish, worker_id, tasks)
        self._woke(claimable)
        return written

    async def _transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], **changes: Any
    ) -> Task | None:
        task, claimable = await run(self._dir.transition, task_id, from_statuses, changes)
        self._woke(claimable)
        return task

    async def _list(
        self, queue_name: str | None, status: TaskStatus | None, limit: int
    ) -> list[Task]:
        return await run(self._dir.list, queue_name, status, limit)

    async def _count(self, queue_name: str | None, status: TaskStatus | None) -> int:
        return await run(self._dir.count, queue_name, status)

    async def _purge(self, queue_name: str | None) -> int:
        return await run(self._dir.purge, queue_name)

    async def _get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        return await run(self._records.get, kind, key)

    async def _list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        return await run(self._records.list, kind)

    async def _put_record(self, kind: str, key: str, data: bytes) -> int:
        return await run(self._records.put, kind, key, data)

    async def _swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        return await run(self._records.swap, kind, key, data, version)

    async def _delete_record(self, kind: str, key: str) -> bool:
        return await run(self._records.delete, kind, key)

    async def wait_for_tasks(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a task may have become claimable in ``queues`` (default: any), or after
        ``timeout`` seconds.

        Writers in this process wake the waiter at once. On a local disk, changes by other
        processes are seen by watching the pending directories' modification times every 50 ms;
        elsewhere they are seen at the worker's next poll. The waiter also returns when a
        delayed task or a lease known here falls due.
        """
        future = self._channel.subscribe()  # before looking, so no notification falls between
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        due = self._dir.next_wake()
        if due is not None:
            deadline = min(deadline, loop.time() + max(0.0, due - time.time()))
        watched = list(queues) if queues else None
        try:
            last = await run(self._dir.pending_signature, watched)
            while (remaining := deadline - loop.time()) > 0:
                step = remaining if last is None else min(remaining, _WATCH_EVERY)
                done, _ = await asyncio.wait({future}, timeout=step)
                if done or (
                    last is not None and await run(self._dir.pending_signature, watched) != last
                ):
                    return
        finally:
            future.cancel()
