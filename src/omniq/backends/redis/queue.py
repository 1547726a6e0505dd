"""The Redis task queue: any number of workers on any number of hosts share one Redis.

Key layout: :mod:`.keys` (every key is ``omniq:{<project>}:...``, one hash-tag slot
per project). Each primitive is one Lua script call, atomic on the server (the scripts are the
``.lua`` files of ``omniq/_redis``, each opening with the keys it touches): a claim promotes due
delayed tasks and lapsed leases, then pops up to ``limit`` tasks from the ready sets of the given
queues in strict order (priority, then FIFO within a queue) and leases them; a finish is a
compare-and-set on (RUNNING, worker, attempts) for a whole batch. A task is a hash: its mutable
state in short fields, its immutable rest (payload included) in one msgpack blob. Leases are set
and checked on the Redis server's clock (``TIME``), so hosts whose clocks disagree never take a
task whose lease is alive; due times (``run_at``) are the enqueuing host's.

Records (schedules, worker heartbeats) are one hash per kind, ``rec:<kind>``, whose fields hold
``<version>:<data>``: reads and deletes are single commands, writes one Lua script that checks
and bumps the version atomically (the compare-and-set that fires each scheduled run once).

Idle workers wake at once: the scripts publish the names of queues that got a claimable task on
the project's ``wake`` channel (and a writer tells waiters in its own process directly), and a
waiter also returns when the next delayed task or lease comes due (each claim reports when).

Events: Redis has no event storage of its own; give the worker any event storage (SQLite,
PostgreSQL, file), e.g. ``SQLiteEventStorage(db_path=...)``.

Durability depends on the server's persistence settings:

- no persistence: a Redis restart loses every task and result.
- RDB snapshots: a restart goes back to the last snapshot: tasks enqueued since are lost,
  finished ones may run again (their leases were live in the snapshot and lapse).
- AOF ``appendfsync everysec`` (recommended): a Redis crash or restart loses nothing (writes reach
  the kernel before the reply); a machine crash or power loss loses at most about a second.
- AOF ``appendfsync always``: every acknowledged enqueue and outcome survives a power loss too.

Replicas are asynchronous: a failover may lose the last acknowledged writes. Leases make all of
these at-least-once: a task lost with its worker or its claim runs again after its lease lapses.
Run Redis with ``maxmemory-policy noeviction`` (the default): an evicting policy would drop
tasks. Needs Redis 6.2 or newer (tested with 7.0). The scripts are cluster-safe (a project's
keys share one hash slot), but this version connects to one server, not to a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Unpack

from omniq.backends.redis.client import (
    Connected,
    LocalPeers,
    Subscription,
    translate,
    wait_future,
)
from omniq.backends.redis.codec import change_fields, decode_rows, finish_rows, insert_rows
from omniq.backends.redis.codec import task_from_fields as _task_from_fields
from omniq.backends.redis.keys import TASK_FIELDS, WAKE_CHANNEL, record_key, task_key
from omniq.backends.redis.options import RedisConnection, RedisTaskQueueConfig
from omniq.config import Settings
from omniq.errors import StorageError, require
from omniq.models import Task, TaskStatus
from omniq.queue.base import CLAIMABLE, AsyncTaskQueue
from omniq.serialization import Serializer

__all__ = ["AsyncRedisTaskQueue", "RedisTaskQueueConfig"]

_PURGE_BATCH = 1000
_SUBSCRIBE_WAIT = 1.0  # how long a waiter waits for the wake-up subscription to come up
_UNSUBSCRIBED_POLL = 0.25  # look again this often while the subscription is down
_DUE_FLOOR = 0.02  # the shortest wait for a task or lease coming due


class AsyncRedisTaskQueue(Connected, AsyncTaskQueue):
    """Task queue in Redis (redis-py's asyncio client)."""

    networked = True

    config_class = RedisTaskQueueConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        queues: Sequence[str] | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        event_store: Any | None = None,
        **connection: Unpack[RedisConnection],
    ) -> None:
        """Connect (lazily, on first use) to the queue of a project in Redis.

        Parameters:
            project_name: namespace in the server: every key starts ``omniq:{project_name}:``.
            queues: the named queues this object serves, in priority order (None: any).
            serializer: encodes calls (default: from ``Settings``).
            settings: defaults (default: ``Settings.from_env()``).
            event_store: where an ENQUEUED event of each stored task goes (default: none).
            connection: ``url=`` (default ``redis://127.0.0.1:6379/0``), parts overriding it,
                pool options (:class:`~omniq.backends.redis.options.RedisConnection`).
        """
        super().__init__(
            project_name=project_name,
            queues=queues,
            serializer=serializer,
            settings=settings,
            event_store=event_store,
        )
        self._connect("queue", **connection)
        self._wake = Subscription(self._conn, WAKE_CHANNEL, self._on_wake, self._on_subscribed)
        # Wake-up news: a counter, the counter value of each queue's latest news, and of the
        # latest (re)subscription (messages may have been missed before it: news for all).
        self._news = 0
        self._news_by_queue: dict[str, int] = {}
        self._news_for_all = 0
        self._seen = -1  # the counter when the last claim was sent
        self._next_due: float | None = None  # from the last claim: earliest delayed task/lease
        self._claim_queues: list[str] | None = self.queues

    async def close(self) -> None:
        """Stop listening and close the connections (they reopen on next use)."""
        await super().close()
        await self._wake.close()
        await self._conn.close()

    # --- primitives --------------------------------------------------------------------------

    async def _insert(self, tasks: list[Task]) -> list[str]:
        rows, blobs = insert_rows(tasks)
        args = [self._prefix, repr(time.time()), rows, blobs]
        with translate("storing tasks"):
            taken_over = (await self._conn.run("insert", [self._prefix + "seq"], args)).split()
        self._tell_local(t.queue_name for t in tasks if t.status in CLAIMABLE)
        ids = [t.id for t in tasks]
        for i in range(0, len(taken_over), 2):  # rows whose key a live task already holds
            ids[int(taken_over[i]) - 1] = taken_over[i + 1].decode()
        return ids

    async def _get(self, task_id: str) -> Task | None:
        with translate("reading a task"):
            values = await self._conn.client.hmget(task_key(self._prefix, task_id), TASK_FIELDS)
        return _from_hash(task_id, values)

    async def _claim(
        self,
        worker_id: str,
        queues: list[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        start: int,
    ) -> list[Task]:
        self._claim_queues = queues
        self._seen = self._news
        names = list(dict.fromkeys(queues)) if queues else []
        args = [
            self._prefix,
            worker_id,
            repr(now.timestamp()),
            repr((lease_until - now).total_seconds()),  # leases run on the server's clock
            limit,
            start,
            *names,
        ]
        with translate("claiming tasks"):
            reply = await self._conn.run("claim", [self._prefix + "queues"], args)
        meta, blobs, next_due = reply
        self._next_due = float(next_due) if next_due is not None else None
        return decode_rows(meta, blobs)

    async def _renew(self, worker_id: str, task_ids: list[str], lease_until: datetime) -> list[str]:
        lease = lease_until.timestamp() - time.time()  # leases run on the server's clock
        args = [self._prefix, worker_id, repr(lease), *task_ids]
        with translate("renewing leases"):
            held = await self._conn.run("renew", [self._prefix + "leases"], args)
        return [i.decode() for i in held]

    async def _mark_started(self, worker_id: str, tasks: list[Task]) -> list[str]:
        args: list[Any] = [self._prefix, worker_id]
        for task in tasks:
            assert task.started_at is not None
            args += [task.id, task.attempts, repr(task.started_at.timestamp())]
        with translate("recording task starts"):
            written = await self._conn.run("mark_started", [self._prefix + "leases"], args)
        return [i.decode() for i in written]

    async def _finish(self, worker_id: str, tasks: list[Task]) -> list[str]:
        args = [self._prefix, worker_id, repr(time.time()), finish_rows(tasks)]
        with translate("writing task outcomes"):
            written = await self._conn.run("finish", [self._prefix + "leases"], args)
        self._tell_local(t.queue_name for t in tasks if t.status in CLAIMABLE)
        return [i.decode() for i in written]

    async def _transition(
        self, task_id: str, from_statuses: tuple[TaskStatus, ...], **changes: Any
    ) -> Task | None:
        args = [
            self._prefix,
            repr(time.time()),
            task_id,
            " ".join(s.value for s in from_statuses),
            change_fields(changes),
        ]
        redis = require("redis", "redis")
        try:
            with translate(f"changing task {task_id}"):
                reply = await self._conn.run("transition", [task_key(self._prefix, task_id)], args)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, redis.ResponseError) and "OMNIQ_KEY_TAKEN" in str(cause):
                raise StorageError(
                    f"task {task_id}: another live task holds its idempotency key, so it cannot "
                    f"be made live again ({cause})"
                ) from cause
            raise
        if reply is None:
            return None
        task = decode_rows(reply[0], reply[1])[0]
        if task.status in CLAIMABLE:
            self._tell_local([task.queue_name])
        return task

    async def _list(
        self, queue_name: str | None, status: TaskStatus | None, limit: int
    ) -> list[Task]:
        if limit <= 0:
            return []
        indexes = await self._indexes(queue_name, status)
        with translate("listing tasks"):
            pipe = self._conn.client.pipeline(transaction=False)
            for index in indexes:
                pipe.zrange(index, 0, limit - 1, withscores=True)
            found = [entry for entries in await pipe.execute() for entry in entries]
            found.sort(key=lambda entry: entry[1])
            ids = [member.decode() for member, _ in found[:limit]]
            pipe = self._conn.client.pipeline(transaction=False)
            for task_id in ids:
                pipe.hmget(task_key(self._prefix, task_id), TASK_FIELDS)
            records = await pipe.execute() if ids else []
        tasks = [_from_hash(i, values) for i, values in zip(ids, records, strict=True)]
        return [t for t in tasks if t is not None]  # purged meanwhile

    async def _count(self, queue_name: str | None, status: TaskStatus | None) -> int:
        indexes = await self._indexes(queue_name, status)
        with translate("counting tasks"):
            pipe = self._conn.client.pipeline(transaction=False)
            for index in indexes:
                pipe.zcard(index)
            return sum(await pipe.execute()) if indexes else 0

    async def _purge(self, queue_name: str | None) -> int:
        args = [self._prefix, _PURGE_BATCH] + ([queue_name] if queue_name is not None else [])
        total = 0
        with translate("purging tasks"):
            while True:
                deleted = await self._conn.run("purge", [self._prefix + "queues"], args)
                total += deleted
                if deleted < _PURGE_BATCH:
                    return total

    async def _get_record(self, kind: str, key: str) -> tuple[int, bytes] | None:
        with translate(f"reading record {kind}/{key}"):
            stored = await self._conn.client.hget(record_key(self._prefix, kind), key)
        return None if stored is None else _record(stored)

    async def _list_records(self, kind: str) -> list[tuple[str, int, bytes]]:
        with translate(f"listing {kind} records"):
            stored = await self._conn.client.hgetall(record_key(self._prefix, kind))
        # Sorted as UTF-8 bytes, which is code point order: the order of str keys.
        return [(k.decode(), *_record(stored[k])) for k in sorted(stored)]

    async def _put_record(self, kind: str, key: str, data: bytes) -> int:
        with translate(f"storing record {kind}/{key}"):
            version = await self._conn.run(
                "put_record", [record_key(self._prefix, kind)], [key, data, ""]
            )
        return int(version)

    async def _swap_record(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        with translate(f"storing record {kind}/{key}"):
            new = await self._conn.run(
                "put_record", [record_key(self._prefix, kind)], [key, data, int(version)]
            )
        return None if new is None else int(new)

    async def _delete_record(self, kind: str, key: str) -> bool:
        with translate(f"deleting record {kind}/{key}"):
            return bool(await self._conn.client.hdel(record_key(self._prefix, kind), key))

    async def _indexes(self, queue_name: str | None, status: TaskStatus | None) -> list[str]:
        """The per-status index keys that hold the matching tasks."""
        if queue_name is not None:
            names = [queue_name]
        else:
            with translate("reading queue names"):
                names = sorted(
                    n.decode() for n in await self._conn.client.smembers(self._prefix + "queues")
                )
        statuses = [status] if status is not None else list(TaskStatus)
        return [f"{self._prefix}idx:{s.value}:{n}" for n in names for s in statuses]

    # --- waiting -----------------------------------------------------------------------------

    async def wait_for_tasks(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a task may have become available in ``queues`` (default: those of the
        last claim), or after ``timeout`` seconds.

        Wakes at once on news published on the project's ``wake`` channel since the last claim,
        and when the next delayed task or lease comes due. While the subscription is down (the
        server restarting, say), it looks again every 0.25 s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        watched = list(queues) if queues is not None else self._claim_queues
        if self._loop is None:
            self._loop = loop
            LocalPeers.join(self._peers, self)
        subscribed = await self._wake.started(min(timeout, _SUBSCRIBE_WAIT))
        woken = self._waiters.future()  # before looking, so no news falls in between
        try:
            while not self._has_news(watched):
                remaining = deadline - loop.time()
                if self._next_due is not None:
                    # Floored: a lease expiry is on the server's clock, which may lag ours.
                    due_in = max(self._next_due - time.time() + 0.001, _DUE_FLOOR)
                    remaining = min(remaining, due_in)
                if not subscribed:
                    remaining = min(remaining, _UNSUBSCRIBED_POLL)
                if remaining <= 0:
                    return
                if await wait_future(woken, remaining) is None:
                    return  # timed out
                woken = self._waiters.future()
        finally:
            woken.cancel()

    def _has_news(self, watched: list[str] | None) -> bool:
        seen = self._seen
        if self._news_for_all > seen:
            return True
        if watched is None:
            return self._news > seen
        return any(self._news_by_queue.get(name, -1) > seen for name in watched)

    def _tell_local(self, queue_names: Iterable[str]) -> None:
        """Wake waiters of this process at once (the published news reaches them later)."""
        names = set(queue_names)
        if names:
            LocalPeers.tell(self._peers, "_on_wake", "\n".join(names).encode())

    def _on_wake(self, data: bytes) -> None:
        self._news += 1
        for name in data.decode(errors="replace").split("\n"):
            self._news_by_queue[name] = self._news
        self._waiters.wake_all(True)

    def _on_subscribed(self) -> None:
        self._news += 1
        self._news_for_all = self._news
        self._waiters.wake_all(True)


def _record(stored: bytes) -> tuple[int, bytes]:
    """A record's ``(version, data)`` from its hash value ``<version>:<data>``."""
    version, _, data = stored.partition(b":")
    return int(version), data


def _from_hash(task_id: str, values: list[bytes | None]) -> Task | None:
    if values[0] is None:
        return None
    return _task_from_fields([task_id, *values[:-1]], values[-1])
