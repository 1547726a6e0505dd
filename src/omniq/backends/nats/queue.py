"""The NATS JetStream task queue: workers on any number of hosts share one NATS server or cluster.

Layout and delivery model: the package docstring (the task table is a key-value bucket whose stream
is also the work queue: one durable pull consumer per named queue and priority band, shared by all
workers, delivers each task's current message; every state change is a compare-and-set on the
key's revision).

- **Claim**: pull from the consumers in strict order (the queues' positions, then priority band,
  highest first) and compare-and-set each due task to RUNNING (all of a pull in one batch of
  requests). Two claimers never both win; the replaced message leaves the consumer by itself.
- **Lease = nak delay**: the claimed task's new message, when a claimer gets it, is ``nak``-ed
  with ``delay = lease_until - now``, so JetStream hands it out again exactly when the lease
  lapses, whatever ``lease_timeout`` each claim asked for (a consumer's ``AckWait`` is one value
  for all claims, so it cannot be the lease itself). A renewal writes the new ``lease_until``
  (a new message replacing the old one); the next claimer to see it naks it until then.
  ``ack_wait`` (default ``Settings.LEASE_TIMEOUT``) is the consumers' ``AckWait``: how long a
  message stays invisible when whoever pulled it dies before answering.
- **Priority within a queue**: bands ``p-10`` .. ``p10`` (priority clamped), FIFO within a band;
  priorities beyond ±10 share the outer band (FIFO among themselves). With ``queues=None`` all
  queues count alike: band first, then enqueue order across queues (a claim pulls every queue's
  consumer of the band and takes the lowest stream sequences; the rest wait in the stash).
- **Delays** (``run_at``, retries): the message is ``nak``-ed with the remaining delay.
- **Idempotency keys**: :mod:`.keys` (a compare-and-set entry per live key, plus
  ``Nats-Msg-Id`` = task id on each create, so a re-sent create is dropped as a duplicate within
  the 2-minute window).
- **Waking** (:mod:`.pairs`): an idle worker leaves a long-poll (a pull request with
  ``expires`` = its wait) on each watched band; JetStream pushes the next message to it at once
  (a new task, or a delay or lease that ended). Bands it does not know yet are announced by a
  core-NATS wake-up sent after each enqueue. Without either (a lost wake-up), any claim looks at
  every band at least once per second.
- **Records** (schedules, worker heartbeats): :mod:`.records` (bucket
  ``omniq_records``; the contract's version inside the value, each write a compare-and-set on
  the key's revision).
- **Waiting tasks** (listed every second by the dependency resolver): an index of record
  entries, one per WAITING task, written before the task (:mod:`.waiting`);
  ``list_tasks(status=WAITING)`` reads the index and gets only those tasks.
- ``enqueue_many`` is atomic per task, not for the whole batch (JetStream has no multi-key
  transaction); the other ``list_tasks`` calls, ``count`` and ``purge`` read every task of the
  project (or queue) through a short-lived consumer: fine for operations, not for hot paths.
  Final tasks stay in the bucket (dead letters included) until purged.

Events: NATS has no event storage in OmniQ; give the worker another one (SQLite, PostgreSQL,
files). Durability: the buckets use file storage (they survive a server restart); with a
cluster, pass ``replicas=3``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Unpack, cast

from omniq.backends.nats import keys, records
from omniq.backends.nats.client import CasConflict, Client, Entry, Write, delivery_info
from omniq.backends.nats.component import Connected
from omniq.backends.nats.keys import MARKER_TTL, decode_status, decode_task, encode_task
from omniq.backends.nats.layout import (
    KEYS_BUCKET,
    QUEUES_BUCKET,
    RECORDS_BUCKET,
    TASKS_BUCKET,
    band,
    bucket_config,
    task_key,
    token,
    wake_subject,
)
from omniq.backends.nats.options import NATSConnection, NATSTaskQueueConfig
from omniq.backends.nats.pairs import PREFETCH_CLAIMS, Pair, Poller, wake_payload
from omniq.backends.nats.waiting import WaitingIndex
from omniq.config import Settings
from omniq.errors import StorageError
from omniq.models import Task, TaskStatus, utcnow
from omniq.queue.base import CLAIMABLE, AsyncTaskQueue
from omniq.serialization import Serializer

__all__ = ["AsyncNATSTaskQueue", "NATSTaskQueueConfig"]

#: (task id, the attempts it must have or None for any, its replacement) for _update_running.
_Change = tuple[str, int | None, Callable[[Task], Task]]

logger = logging.getLogger("omniq.nats")

# How often a claimer re-reads the project's (queue, band) registry: wake-ups announce new pairs
# at once; this finds those whose wake-up was lost.
_REGISTRY_REFRESH_S = 5.0


class AsyncNATSTaskQueue(Connected, AsyncTaskQueue):
    """Task queue on NATS JetStream (nats-py)."""

    networked = True

    config_class = NATSTaskQueueConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        queues: Sequence[str] | None = None,
        ack_wait: float | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        event_store: Any | None = None,
        **connection: Unpack[NATSConnection],
    ) -> None:
        """Connect (lazily, on first use) to a project's task queue on NATS JetStream.

        Parameters:
            project_name: namespace on the server; projects never see each other's tasks.
            queues: the named queues this object serves, in priority order (None: any).
            ack_wait: the consumers' ``AckWait`` in seconds (default ``Settings.LEASE_TIMEOUT``),
                applied when this object first uses a consumer (the last process to do so wins);
                leases do not depend on it (see the module's notes).
            serializer: encodes calls (default: from ``Settings``).
            settings: defaults (default: ``Settings.from_env()``).
            event_store: where an ENQUEUED event of each stored task goes (default: none).
            connection: ``servers=``, ``replicas=`` of the buckets this object creates,
                ``connect_options=`` (:class:`~omniq.backends.nats.options.NATSConnection`).
        """
        super().__init__(
            project_name=project_name,
            queues=queues,
            serializer=serializer,
            settings=settings,
            event_store=event_store,
        )
        self._open(**connection)
        self.ack_wait = float(ack_wait or self.settings.LEASE_TIMEOUT)
        self._poller = Poller(self._p, self.project_name, self.ack_wait)
        self._waiting = WaitingIndex(self._p)
        # Our last write of each task we claimed: (revision, task), for compare-and-set.
        self._held: dict[str, tuple[int, Task]] = {}
        self._claim_queues: list[str] | None = self.queues

    async def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        await super().close()
        client, self._client, self._setup = self._client, None, None
        await self._poller.close()
        if client is not None:
            await client.release()

    def _buckets(self) -> list[dict[str, Any]]:
        return [
            bucket_config(bucket, replicas=self.replicas, description=description)
            for bucket, description in (
                (TASKS_BUCKET, "OmniQ tasks (and their delivery)"),
                (KEYS_BUCKET, "OmniQ idempotency keys"),
                (QUEUES_BUCKET, "OmniQ named queues and priority bands"),
                (RECORDS_BUCKET, "OmniQ records (schedules, worker heartbeats)"),
            )
        ]

    # --- primitives --------------------------------------------------------------------------

    async def _insert(self, tasks: list[Task]) -> list[str]:
        client = await self._c()
        await self._waiting.start(client)
        waiting = [t for t in tasks if t.status is TaskStatus.WAITING]
        if waiting:  # indexed first: a crash in between leaves only an entry without its task
            await self._waiting.add(client, [(self._key(t), t) for t in waiting])
        await self._poller.register(client, {(t.queue_name, band(t.priority)) for t in tasks})
        plain = [t for t in tasks if t.key is None]
        first_of_key = {t.key: t for t in reversed(tasks) if t.key is not None}
        outcomes, *holders = await asyncio.gather(
            client.kv_write_many(TASKS_BUCKET, [keys.create_write(self._p, t) for t in plain]),
            *(keys.insert_keyed(client, self._p, t) for t in first_of_key.values()),
        )
        for outcome in outcomes:
            # A conflict: already stored, by a re-sent create or a concurrent keyed enqueue.
            if isinstance(outcome, StorageError) and not isinstance(outcome, CasConflict):
                raise outcome
        holder_of = dict(zip(first_of_key, cast(list[str], holders), strict=True))
        ids = [t.id if t.key is None else holder_of[t.key] for t in tasks]
        if waiting:  # keyed tasks that another live task stood in for: never stored
            unused = [
                t.id
                for i, t in zip(ids, tasks, strict=True)
                if i != t.id and t.status is TaskStatus.WAITING
            ]
            await self._waiting.drop(client, unused)
        now = utcnow()
        stored = [t for i, t in zip(ids, tasks, strict=True) if i == t.id]
        await self._wake(client, [t for t in stored if t.status in CLAIMABLE], now)
        return ids

    async def _get(self, task_id: str) -> Task | None:
        entry = await self._find(await self._c(), task_id)
        return None if entry is None else decode_task(entry.value, entry.key)

    async def _claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        client = await self._c()
        self._claim_queues = queues
        poller = self._poller
        await poller.subscribe(client)
        book = poller.book
        book.start_claim()
        loop = asyncio.get_running_loop()
        await poller.load(client, _REGISTRY_REFRESH_S)
        taken: list[Task] = []
        shared = book.shared_bands() if queues is None else {}
        for pair in book.ordered(queues):
            if len(taken) >= limit:
                break
            band_pairs = shared.get(pair.band)
            if band_pairs is not None:
                if pair is band_pairs[0]:
                    taken += await self._claim_band(
                        client,
                        band_pairs,
                        limit - len(taken),
                        worker_id,
                        now,
                        lease_until,
                        start - len(taken),
                    )
                continue
            while len(taken) < limit:
                wanted = limit - len(taken)
                if pair.prefetch is not None and len(pair.stash) < wanted:
                    await pair.prefetch  # its messages come before a newer pull's
                msgs = book.take(pair, wanted)
                if msgs:
                    last = not pair.stash and delivery_info(msgs[-1])[1] == 0
                    if not last:
                        # The next claims' pull leaves with these compare-and-sets (one write
                        # to the socket, one wake-up of the server).
                        self._prefetch(client, pair, limit, loop.time())
                    taken += await self._take(
                        client, pair, msgs, worker_id, now, lease_until, start - len(taken)
                    )
                    if last and not pair.stash:
                        pair.quiet_at = pair.news  # nothing else was waiting behind them
                    continue
                if not pair.worth_pulling(loop.time()):
                    break
                msgs = await poller.pull(client, pair, wanted)
                taken += await self._take(
                    client, pair, msgs, worker_id, now, lease_until, start - len(taken)
                )
                if len(msgs) < wanted:
                    break
            if taken:
                self._prefetch(client, pair, limit, loop.time())
        return taken

    async def _claim_band(
        self,
        client: Client,
        pairs: list[Pair],
        limit: int,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        """Claim from one priority band of several queues, oldest message first across them
        (the stream sequence is enqueue order), as the other backends do without a queue
        order; what a claim does not use goes back to the front of its pair's stash. Of the
        messages chosen, those among the first ``start`` count an attempt (see :meth:`_take`)."""
        book = self._poller.book
        loop = asyncio.get_running_loop()
        taken: list[Task] = []
        while len(taken) < limit:
            wanted = limit - len(taken)
            offered: list[tuple[int, Pair, Any]] = []
            for pair in pairs:
                if pair.prefetch is not None and len(pair.stash) < wanted:
                    await pair.prefetch
                msgs = book.take(pair, wanted)
                if len(msgs) < wanted and pair.worth_pulling(loop.time()):
                    msgs += await self._poller.pull(client, pair, wanted - len(msgs))
                offered += [(delivery_info(msg)[0], pair, msg) for msg in msgs]
            if not offered:
                break
            offered.sort(key=lambda item: item[0])
            for pair, msgs in _by_pair(offered[wanted:]):
                book.put_back(pair, msgs)
            chosen = offered[:wanted]
            rank = {_task_id(msg): i for i, (_, _, msg) in enumerate(chosen)}
            batch: list[Task] = []
            counted = start - len(taken)
            for pair, msgs in _by_pair(chosen):
                # A group keeps the chosen order, so its messages ranked under ``counted`` come
                # first in it.
                first = sum(rank[_task_id(msg)] < counted for msg in msgs)
                batch += await self._take(client, pair, msgs, worker_id, now, lease_until, first)
            taken += sorted(batch, key=lambda task: rank.get(task.id, 0))
        return taken

    def _prefetch(self, client: Client, pair: Pair, limit: int, now: float) -> None:
        """Fetch the next claims' messages meanwhile (handed back unused after ``STASH_S``), so
        that a claim costs one round trip, its compare-and-sets: when at most one claim's worth
        is left, pull up to ``PREFETCH_CLAIMS`` claims' worth (few, larger pulls)."""
        ahead = PREFETCH_CLAIMS * limit - len(pair.stash)
        if (
            pair.prefetch is None
            and len(pair.stash) <= limit
            and ahead > 0
            and pair.worth_pulling(now)
        ):
            pair.prefetch = asyncio.ensure_future(self._poller.prefetch(client, pair, ahead))

    async def _take(
        self,
        client: Client,
        pair: Pair,
        msgs: list[Any],
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        """Act on delivered messages: claim their tasks (one compare-and-set each, sent
        together), put them back until due, or drop them. A message replaced by a newer write
        (ours or anyone's) leaves the consumer's pending list by itself: no ack needed.

        The first ``start`` tasks chosen count an attempt, as does one taken back from a lapsed
        lease; the others are claimed ahead (one that loses its compare-and-set leaves fewer
        counted: the worker counts those when they start)."""
        chosen: list[tuple[str, Task, int]] = []
        for msg in msgs:
            if msg.headers and msg.headers.get("KV-Operation"):
                await client.ack(msg)  # a purged task
                continue
            key = msg.subject[len(TASKS_BUCKET) + 5 :]
            task = decode_task(msg.data, key)  # a corrupt record: a stand-in, failed when run
            if task.status in CLAIMABLE:
                if task.run_at > now:
                    await self._later(client, pair, msg, task.run_at, now)
                    continue
            elif task.status is TaskStatus.RUNNING:
                if task.lease_until is not None and task.lease_until >= now:
                    await self._later(client, pair, msg, task.lease_until, now)
                    continue
            else:
                await client.ack(msg)  # final (or waiting: its next write delivers it again)
                continue
            counted = len(chosen) < start or task.status is TaskStatus.RUNNING
            claimed = task.evolve(
                status=TaskStatus.RUNNING,
                worker_id=worker_id,
                lease_until=lease_until,
                attempts=task.attempts + counted,
                started_at=now if counted else None,
            )
            chosen.append((key, claimed, delivery_info(msg)[0]))
        if not chosen:
            return []
        writes = [Write(key, encode_task(task), last=revision) for key, task, revision in chosen]
        outcomes = await client.kv_write_many(TASKS_BUCKET, writes)
        taken, failure = [], None
        for (_, task, _), outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, int):
                self._held[task.id] = (outcome, task)
                taken.append(task)
            elif not isinstance(outcome, CasConflict):  # a conflict: someone else was faster
                failure = outcome
        if failure is not None and not taken:
            raise failure  # the messages come back after their AckWait
        return taken

    async def _later(
        self, client: Client, pair: Pair, msg: Any, due: datetime, now: datetime
    ) -> None:
        """Hand a message back until ``due`` (a delayed task, or the end of a lease)."""
        await client.nak(msg, max((due - now).total_seconds(), 0.001))
        self._poller.book.hint(pair.queue, pair.band, due.timestamp())
        return None

    async def _renew(self, worker_id: str, task_ids: list[str], lease_until: datetime) -> list[str]:
        client = await self._c()
        changes: list[_Change] = [
            (i, None, lambda t: t.evolve(lease_until=lease_until)) for i in task_ids
        ]
        return await self._update_running(client, worker_id, changes, keep=True)

    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        client = await self._c()
        changes: list[_Change] = [
            (t.id, t.attempts - 1, _started(t.attempts, t.started_at)) for t in tasks
        ]
        return await self._update_running(client, worker_id, changes, keep=True, unstarted=True)

    async def _finish(self, worker_id: str, tasks: list[Task]) -> list[str]:
        client = await self._c()
        changes: list[_Change] = [(t.id, t.attempts, _replacement(t)) for t in tasks]
        written = await self._update_running(client, worker_id, changes, keep=False)
        done = set(written)
        await self._wake(client, [t for t in tasks if t.id in done and t.status in CLAIMABLE])
        return written

    async def _update_running(
        self,
        client: Client,
        worker_id: str,
        changes: list[_Change],
        *,
        keep: bool,
        unstarted: bool = False,
    ) -> list[str]:
        """Compare-and-set tasks still RUNNING under ``worker_id`` (with that many attempts,
        unless None; claimed ahead and not started, if ``unstarted``): first all at once from
        the revisions this object wrote at claim time, then one by one from a fresh read for
        those that changed since."""

        def holds(task: Task, attempts: int | None) -> bool:
            return (
                task.status is TaskStatus.RUNNING
                and task.worker_id == worker_id
                and (attempts is None or task.attempts == attempts)
                and not (unstarted and task.started_at is not None)
            )

        fast, slow = [], []
        for change in changes:
            held = self._held.get(change[0])
            if held is not None and holds(held[1], change[1]):
                fast.append((change, held))
            else:
                slow.append(change)
        writes = [
            Write(self._key(task), encode_task(make(task)), last=revision)
            for (_, _, make), (revision, task) in fast
        ]
        written: list[str] = []
        for ((task_id, attempts, make), (_, task)), outcome in zip(
            fast, await client.kv_write_many(TASKS_BUCKET, writes), strict=True
        ):
            if isinstance(outcome, CasConflict):
                slow.append((task_id, attempts, make))  # renewed, cancelled or taken over?
            elif isinstance(outcome, StorageError):
                raise outcome
            else:
                self._remember(task_id, (outcome, make(task)) if keep else None)
                written.append(task_id)

        async def one(task_id: str, attempts: int | None, make: Callable[[Task], Task]) -> bool:
            while True:
                entry = await self._find(client, task_id)
                if entry is None:
                    return False
                task = decode_task(entry.value, entry.key)
                if not holds(task, attempts):
                    mine = self._held.get(task_id)
                    if task.status is not TaskStatus.RUNNING or (
                        mine is not None and mine[1].worker_id == worker_id
                    ):
                        self._remember(task_id, None)  # over, or our claim of it is stale
                    return False
                new = make(task)
                try:
                    revision = await client.kv_write(
                        TASKS_BUCKET, entry.key, encode_task(new), last=entry.revision
                    )
                except CasConflict:
                    continue
                self._remember(task_id, (revision, new) if keep else None)
                return True

        done = await asyncio.gather(*(one(*change) for change in slow))
        return written + [change[0] for change, ok in zip(slow, done, strict=True) if ok]

    def _remember(self, task_id: str, held: tuple[int, Task] | None) -> None:
        if held is None:
            self._held.pop(task_id, None)
        else:
            self._held[task_id] = held

    async def _transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], **changes: Any
    ) -> Task | None:
        client = await self._c()
        while True:
            entry = await self._find(client, task_id)
            if entry is None:
                return None
            task = decode_task(entry.value, entry.key)
            if task.status not in from_statuses:
                return None
            new = task.evolve(**changes)
            if new.key is not None and task.status.is_final and not new.status.is_final:
                await keys.retake_key(client, self._p, entry.key, new)
            was_waiting = task.status is TaskStatus.WAITING
            if new.status is TaskStatus.WAITING and not was_waiting:
                await self._waiting.add(client, [(entry.key, new)])  # indexed first
            try:
                await client.kv_write(
                    TASKS_BUCKET, entry.key, encode_task(new), last=entry.revision
                )
            except CasConflict:
                continue
            if was_waiting and new.status is not TaskStatus.WAITING:
                await self._waiting.drop(client, [task_id])
            if new.status in CLAIMABLE:
                await self._wake(client, [new])
            return new

    async def _list(
        self, queue_name: str | None, status: TaskStatus | None, limit: int
    ) -> list[Task]:
        if status is TaskStatus.WAITING:
            return await self._waiting.list(await self._c(), queue_name, limit)
        entries = await self._scan(queue_name)
        tasks = [decode_task(e.value, e.key) for e in entries]
        tasks = [t for t in tasks if status is None or t.status is status]
        tasks.sort(key=lambda t: (t.created_at, t.id))
        return tasks[:limit]

    async def _count(self, queue_name: str | None, status: TaskStatus | None) -> int:
        entries = await self._scan(queue_name)
        if status is None:
            return len(entries)
        return sum(1 for e in entries if decode_status(e.value) is status)

    async def _purge(self, queue_name: str | None) -> int:
        client = await self._c()

        unindex: list[str] = []

        async def drop(entry: Entry) -> bool:
            task = decode_task(entry.value, entry.key)
            if task.status is TaskStatus.RUNNING:
                return False
            try:
                await client.kv_write(
                    TASKS_BUCKET, entry.key, b"", last=entry.revision, purge=True, ttl=MARKER_TTL
                )
            except CasConflict:
                return False  # changed meanwhile (claimed, say): left alone
            if task.key is not None:
                await keys.drop_key(client, self._p, task.key, entry.key)
            if task.status is TaskStatus.WAITING:
                unindex.append(task.id)
            return True

        dropped = await asyncio.gather(*map(drop, await self._scan(queue_name)))
        await self._waiting.drop(client, unindex)
        return sum(dropped)

    async def _get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        return await records.get(await self._c(), self._p, kind, key)

    async def _list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        return await records.list_kind(await self._c(), self._p, kind)

    async def _put_record(self, kind: str, key: str, data: bytes) -> int:
        version = await records.write(await self._c(), self._p, kind, key, data, None)
        assert version is not None
        return version

    async def _swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        return await records.write(await self._c(), self._p, kind, key, data, version)

    async def _delete_record(self, kind: str, key: str) -> bool:
        return await records.delete(await self._c(), self._p, kind, key)

    # --- waiting -----------------------------------------------------------------------------

    async def wait_for_tasks(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a task may have become claimable in ``queues`` (default: those of the last
        claim), or after ``timeout`` seconds: at once when a long-poll brings a message (a new
        task, an ended delay or lease) or a wake-up announces a queue it does not poll yet."""
        client = await self._c()
        poller = self._poller
        await poller.subscribe(client)
        watched = list(queues) if queues is not None else self._claim_queues
        book = poller.book
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await poller.linger(client, watched, timeout)
        while True:
            woken = book.signal.subscribe()
            try:
                if book.has_news(watched):
                    return
                remaining = deadline - loop.time()
                due = book.next_due(watched)
                if due is not None:
                    remaining = min(remaining, due - utcnow().timestamp())
                if remaining <= 0 or not await book.signal.wait(woken, remaining):
                    return
            finally:
                woken.cancel()

    # --- helpers -----------------------------------------------------------------------------

    def _key(self, task: Task) -> str:
        return task_key(self._p, task.id, task.queue_name, task.priority)

    async def _find(self, client: Client, task_id: str) -> Entry | None:
        return await client.kv_find(TASKS_BUCKET, f"{self._p}.{token(task_id)}.*.*")

    async def _scan(self, queue_name: str | None) -> list[Entry]:
        client = await self._c()
        queue = "*" if queue_name is None else token(queue_name)
        return await client.kv_scan(TASKS_BUCKET, f"{self._p}.*.{queue}.*")

    async def _wake(self, client: Client, tasks: list[Task], now: datetime | None = None) -> None:
        if not tasks:
            return
        now_ts = (now or utcnow()).timestamp()
        items = [
            (t.queue_name, band(t.priority), 0.0 if t.run_at.timestamp() <= now_ts else
             t.run_at.timestamp())
            for t in tasks
        ]  # fmt: skip
        await client.publish(wake_subject(self._p), wake_payload(items))


def _started(attempts: int, started_at: datetime | None) -> Callable[[Task], Task]:
    return lambda task: task.evolve(attempts=attempts, started_at=started_at)


def _by_pair(items: list[tuple[int, Pair, Any]]) -> list[tuple[Pair, list[Any]]]:
    """Messages grouped by pair, each group in the order given."""
    groups: dict[int, tuple[Pair, list[Any]]] = {}
    for _, pair, msg in items:
        groups.setdefault(pair.index, (pair, []))[1].append(msg)
    return list(groups.values())


def _task_id(msg: Any) -> str:
    # A task message's subject: "$KV.<bucket>.<project>.<task id>.<queue>.p<band>".
    return msg.subject.rsplit(".", 3)[1]


def _replacement(new: Task) -> Callable[[Task], Task]:
    return lambda _: new
