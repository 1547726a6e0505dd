"""NATS JetStream result storage: a key-value bucket, results expiring on the server.

Layout: the package docstring (bucket ``omniq_results``, key ``<project>.<task id>``, file storage).
Each result is written with a per-message TTL (``Nats-TTL``, whole seconds, at least 1) from its
``expires_at``; the bucket's ``max_age`` is ``Settings.RESULT_TTL`` of the process that created
it. Limits of per-result TTLs: a TTL longer than the bucket's ``max_age`` is cut to ``max_age``
(the server applies the shorter); a result without expiry is kept (``Nats-TTL: never``). Expired
results are removed by the server, so :meth:`cleanup_expired` has nothing to do (returns 0);
reads also hide results past their ``expires_at``.

``get(..., wait=True)`` watches the project's keys (one ordered push consumer per storage object,
new writes only, started on the first wait; the value of a key someone waits for is kept from
the watch, so no second read is needed) and returns as soon as the result is written, from any
host; no polling (a safety re-check runs every few seconds).

Events: NATS has no event storage in OmniQ; pair this with any event storage (SQLite, PostgreSQL,
files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import datetime
from typing import Any, Unpack

from omniq._notify import Signal
from omniq.backends.nats.client import CasConflict, Write
from omniq.backends.nats.component import Connected
from omniq.backends.nats.layout import (
    RESULTS_BUCKET,
    bucket_config,
    bucket_stream,
    kv_subject,
    token,
)
from omniq.backends.nats.options import NATSConnection, NATSResultStorageConfig
from omniq.config import Settings
from omniq.errors import StorageError, require
from omniq.models import TaskResult, utcnow
from omniq.serialization import Serializer
from omniq.storage.base import AsyncResultStorage

__all__ = ["AsyncNATSResultStorage", "NATSResultStorageConfig"]

logger = logging.getLogger("omniq.nats")

_MARKER_TTL = "60s"
_RECHECK_S = 5.0  # a waiter looks again this often anyway (a safety net, not the mechanism)


class AsyncNATSResultStorage(Connected, AsyncResultStorage):
    """Results in a NATS JetStream key-value bucket, expiring with their ``result_ttl``."""

    config_class = NATSResultStorageConfig

    def __init__(
        self,
        *,
        project_name: str | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        **connection: Unpack[NATSConnection],
    ) -> None:
        """Connect (lazily, on first use) to a project's results on NATS JetStream: parameters
        as for :class:`.queue.AsyncNATSTaskQueue` (``serializer`` encodes result values;
        ``settings.RESULT_TTL`` is the bucket's ``max_age`` when this object creates it)."""
        super().__init__(project_name=project_name, serializer=serializer, settings=settings)
        self._open(**connection)
        self._signal = Signal()
        self._watch: Any = None
        self._watch_setup: asyncio.Future[None] | None = None
        # Keys someone waits for (with how many waiters), and values the watch brought them.
        self._waiting: dict[str, int] = {}
        self._pushed: dict[str, bytes] = {}

    async def close(self) -> None:
        """Stop watching and close the connection (it reopens on next use)."""
        client, self._client, self._setup = self._client, None, None
        watch, self._watch, self._watch_setup = self._watch, None, None
        if watch is not None:
            with contextlib.suppress(Exception):
                await watch.unsubscribe()
        if client is not None:
            await client.release()

    def _buckets(self) -> list[dict[str, Any]]:
        return [
            bucket_config(
                RESULTS_BUCKET,
                replicas=self.replicas,
                max_age_s=self.settings.RESULT_TTL,
                description="OmniQ task results",
            )
        ]

    # --- waiting -----------------------------------------------------------------------------

    async def get(
        self, task_id: str, wait: bool = False, timeout: float | None = None
    ) -> TaskResult | None:
        """The result of a task; with ``wait``, block until it exists (``TimeoutError`` after
        ``timeout`` seconds): woken by a watch on the bucket, not by polling."""
        if not wait:
            return await self._get_live(task_id)
        await self._ensure_watch()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        key = token(task_id)
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            while True:
                woken = self._signal.subscribe(key)  # before looking: no write missed
                try:
                    pushed = self._pushed.pop(key, None)  # the watch brought the value itself
                    if pushed is not None:
                        result = self._live(task_id, pushed)
                    else:
                        result = await self._get_live(task_id)
                    if result is not None:
                        return result
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"no result for task {task_id} within {timeout} s")
                    step = _RECHECK_S if remaining is None else min(remaining, _RECHECK_S)
                    await self._signal.wait(woken, step)
                finally:
                    woken.cancel()
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                self._pushed.pop(key, None)

    async def _ensure_watch(self) -> None:
        if self._watch is not None:
            return
        if self._watch_setup is None or self._watch_setup.get_loop() is not (
            asyncio.get_running_loop()
        ):
            self._watch_setup = asyncio.ensure_future(self._start_watch())
        await asyncio.shield(self._watch_setup)

    async def _start_watch(self) -> None:
        client = await self._c()
        nc = await client.nc()
        api = require("nats.js.api", "nats")
        errors = require("nats.errors", "nats")
        prefix = len(RESULTS_BUCKET) + len(self._p) + 6  # "$KV.<bucket>.<p>."

        async def written(msg: Any) -> None:
            key = msg.subject[prefix:]
            if key in self._waiting:
                if msg.data and not (msg.headers and msg.headers.get("KV-Operation")):
                    self._pushed[key] = msg.data
                self._signal.notify([key])

        try:
            self._watch = await nc.jetstream().subscribe(
                kv_subject(RESULTS_BUCKET, f"{self._p}.>"),
                stream=bucket_stream(RESULTS_BUCKET),
                cb=written,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
            )
        except (TimeoutError, errors.Error) as exc:
            self._watch_setup = None
            raise StorageError(f"NATS: watching results failed: {exc!r}") from exc

    # --- primitives --------------------------------------------------------------------------

    async def _put_many(self, results: list[tuple[TaskResult, bytes]]) -> None:
        client = await self._c()
        now = utcnow()
        writes = [Write(self._key(r.task_id), data, ttl=_ttl(r, now)) for r, data in results]
        for outcome in await client.kv_write_many(RESULTS_BUCKET, writes):
            if isinstance(outcome, StorageError):
                raise outcome

    async def _get(self, task_id: str) -> bytes | None:
        entry = await (await self._c()).kv_get(RESULTS_BUCKET, self._key(task_id))
        return None if entry is None else entry.value

    async def _delete(self, task_id: str) -> bool:
        client = await self._c()
        key = self._key(task_id)
        while True:
            entry = await client.kv_get(RESULTS_BUCKET, key)
            if entry is None:
                return False
            try:
                await client.kv_write(
                    RESULTS_BUCKET, key, b"", last=entry.revision, purge=True, ttl=_MARKER_TTL
                )
                return True
            except CasConflict:
                continue

    async def _delete_expired(self, now: datetime) -> int:
        return 0  # the server removes each result when its TTL ends

    def _key(self, task_id: str) -> str:
        return f"{self._p}.{token(task_id)}"


def _ttl(result: TaskResult, now: datetime) -> str:
    if result.expires_at is None:
        return "never"
    return f"{max(1, math.ceil((result.expires_at - now).total_seconds()))}s"
