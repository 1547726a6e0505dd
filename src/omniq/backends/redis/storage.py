"""Redis result storage: each result a string key with Redis expiry; waiters told by pub/sub.

Key layout: :mod:`.keys`. A result is written with ``SET ... PX`` (time left until
its ``expires_at``), so Redis itself deletes expired results and :meth:`cleanup_expired` has
nothing to do. The write script also publishes the ids on the project's ``results`` channel,
with the results themselves when small (up to :data:`INLINE_RESULT_BYTES`):
``get(..., wait=True)`` returns as soon as the result is written, on any host, mostly without
reading it back. Waiters in the writer's own process are handed the result directly.

Events: Redis has no event storage in OmniQ; pair this with any event storage (SQLite,
PostgreSQL, file). Persistence guarantees: see :mod:`.queue`.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Unpack

from omniq.backends.redis.client import (
    Connected,
    LocalPeers,
    Subscription,
    translate,
    wait_future,
)
from omniq.backends.redis.keys import RESULTS_CHANNEL, result_key
from omniq.backends.redis.options import RedisConnection, RedisResultStorageConfig
from omniq.config import Settings
from omniq.errors import StorageError
from omniq.models import TaskResult
from omniq.serialization import Serializer
from omniq.storage.base import AsyncResultStorage

__all__ = [
    "INLINE_RESULT_BYTES",
    "AsyncRedisResultStorage",
    "RedisResultStorageConfig",
]

_SUBSCRIBE_WAIT = 1.0  # how long a waiter waits for the results subscription to come up
_UNSUBSCRIBED_POLL = 0.25  # look again this often while the subscription is down
_RECHECK = 5.0  # look again at least this often anyway (pub/sub delivers at most once)
#: Results up to this many bytes travel inside the notification, so a waiter need not read them.
INLINE_RESULT_BYTES = 4096


class AsyncRedisResultStorage(Connected, AsyncResultStorage):
    """Results in Redis, expiring with their ``result_ttl``."""

    config_class = RedisResultStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        **connection: Unpack[RedisConnection],
    ) -> None:
        """Connect (lazily, on first use) to the results of a project in Redis: parameters as
        for :class:`.queue.AsyncRedisTaskQueue` (``serializer`` encodes result values)."""
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self._connect("results", **connection)
        self._listener = Subscription(
            self._conn, RESULTS_CHANNEL, self._on_results, self._waiters.wake_all
        )

    async def close(self) -> None:
        """Stop listening and close the connections (they reopen on next use)."""
        await self._listener.close()
        await self._conn.close()

    async def get(
        self, task_id: str, wait: bool = False, timeout: float | None = None
    ) -> TaskResult | None:
        """The result of a task; with ``wait``, block until it exists (``TimeoutError`` after
        ``timeout`` seconds). Waiting is woken by the project's ``results`` channel."""
        if not wait:
            return await self._get_live(task_id)
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            LocalPeers.join(self._peers, self)
        deadline = None if timeout is None else loop.time() + timeout
        first_wait = _SUBSCRIBE_WAIT if timeout is None else min(timeout, _SUBSCRIBE_WAIT)
        subscribed = await self._listener.started(first_wait)
        data: bytes | None = None
        while True:
            written = self._waiters.future(task_id)  # before looking: no write falls between
            try:
                if data is None:
                    result = await self._get_live(task_id)
                else:
                    result = self._live(task_id, data)
                if result is not None:
                    return result
                remaining = _RECHECK if deadline is None else deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no result for task {task_id} within {timeout} s")
                pace = _RECHECK if subscribed else _UNSUBSCRIBED_POLL
                # The result itself when it was inlined or written here; else None: read it.
                data = await wait_future(written, min(remaining, pace))
            finally:
                written.cancel()
            subscribed = await self._listener.started(0)

    # --- primitives --------------------------------------------------------------------------

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        now = time.time()
        ids, sizes, ttls = [], [], []
        for result, data in results:
            ids.append(result.task_id)
            sizes.append(str(len(data)))
            expires = result.expires_at
            if expires is None:
                ttls.append("-")
            else:
                ttls.append(str(max(1, math.ceil((expires.timestamp() - now) * 1000))))
        args = [
            self._prefix,
            " ".join(ids),
            " ".join(sizes),
            " ".join(ttls),
            b"".join(data for _, data in results),
            INLINE_RESULT_BYTES,
        ]
        with translate("storing results"):
            await self._conn.run("put_results", [result_key(self._prefix, ids[0])], args)
        # Waiters in this process get the results at once (the published news reaches them
        # later); yielding once lets those on this loop return before the worker goes on.
        if LocalPeers.tell(self._peers, "_deliver", [(r.task_id, data) for r, data in results]):
            await asyncio.sleep(0)

    async def _get(self, task_id: str) -> bytes | None:
        with translate("reading a result"):
            data = await self._conn.client.get(result_key(self._prefix, task_id))
        if data is not None and not isinstance(data, bytes):
            raise StorageError(f"the stored result of task {task_id} is not a string")
        return data

    async def _delete(self, task_id: str) -> bool:
        with translate("deleting a result"):
            return bool(await self._conn.client.delete(result_key(self._prefix, task_id)))

    async def _delete_expired(self, now: datetime) -> int:
        return 0  # Redis deletes expired results itself (each is written with PX)

    def _deliver(self, results: list[tuple[str, bytes]]) -> None:
        for task_id, data in results:
            self._waiters.wake(task_id, data)

    def _on_results(self, message: bytes) -> None:
        """A put's notification: ``<id> <size or -> ...`` then a newline and inlined results."""
        header, _, body = message.partition(b"\n")
        tokens = header.split(b" ")
        offset = 0
        for i in range(0, len(tokens) - 1, 2):
            task_id, size = tokens[i].decode(errors="replace"), tokens[i + 1]
            if size == b"-":
                self._waiters.wake(task_id)
            else:
                end = offset + int(size)
                self._waiters.wake(task_id, body[offset:end])
                offset = end
