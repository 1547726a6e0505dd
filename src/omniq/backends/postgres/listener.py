"""LISTEN on a dedicated connection and wake the waiters that a notification names.

Pooled connections cannot hold a LISTEN (they are shared and reset), so each listening object
opens one connection of its own, lazily, on the first wait. Notification payloads are JSON
lists of keys (queue names, task ids); a waiter subscribes to some keys, or to any. When the
connection is lost, a notification may have been missed: every waiter is woken to look again,
and the next subscription reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable
from typing import Any

import msgspec

from omniq.backends.postgres.connection import ConnectOptions, connection_errors, storage_error
from omniq.errors import require

__all__ = ["ANY", "Listener"]

ANY: Hashable = ("omniq-any",)  # the key of waiters that take any notification
_decode = msgspec.json.Decoder(list[str])


class Listener:
    """One connection LISTENing on one channel, on one event loop at a time."""

    def __init__(self, options: ConnectOptions, channel: str) -> None:
        self.options = options
        self.channel = channel
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._waiters: dict[Hashable, set[asyncio.Future[None]]] = {}

    async def subscribe(self, keys: Iterable[Hashable] | None = None) -> asyncio.Future[None]:
        """A future resolved by the next notification naming one of ``keys`` (None: any).

        The channel is listened to before this returns, so a change committed after it is not
        missed: subscribe first, then look at the data, then wait.
        """
        await self._connect()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entries = [ANY] if keys is None else list(dict.fromkeys(keys))
        for key in entries:
            self._waiters.setdefault(key, set()).add(future)
        future.add_done_callback(lambda done: self._discard(entries, done))
        return future

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._wake_all()
        if conn is None:
            return
        if self._loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        else:
            _terminate(conn, self._loop)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Used from a new loop: the old connection and waiters belong to the old one.
            if self._conn is not None:
                _terminate(self._conn, self._loop)
                self._conn = None
            self._wake_all()
            self._loop, self._lock = loop, asyncio.Lock()
        if self._conn is not None:
            return
        assert self._lock is not None
        async with self._lock:
            if self._conn is not None:
                return
            asyncpg = require("asyncpg", "postgres")
            try:
                conn = await asyncpg.connect(**self.options.connect_kwargs())
            except (*connection_errors(), asyncpg.PostgresError) as exc:
                raise storage_error(self.options, exc) from exc
            try:
                conn.add_termination_listener(self._lost)
                await conn.add_listener(self.channel, self._notified)
            except (*connection_errors(), asyncpg.PostgresError) as exc:
                conn.terminate()
                raise storage_error(self.options, exc) from exc
            self._conn = conn

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            keys = _decode.decode(payload) if payload else None
        except msgspec.DecodeError:
            keys = None
        if keys is None:
            self._wake_all()
            return
        woken: set[asyncio.Future[None]] = set(self._waiters.get(ANY, ()))
        for key in keys:
            waiters = self._waiters.get(key)
            if waiters:
                woken.update(waiters)
        for future in woken:
            if not future.done():
                future.set_result(None)

    def _lost(self, conn: Any) -> None:
        if conn is self._conn:
            self._conn = None
            self._wake_all()

    def _wake_all(self) -> None:
        futures = {future for waiters in self._waiters.values() for future in waiters}
        self._waiters.clear()
        for future in futures:
            if not future.done() and not future.get_loop().is_closed():
                future.get_loop().call_soon_threadsafe(_resolve, future)

    def _discard(self, keys: list[Hashable], future: asyncio.Future[None]) -> None:
        for key in keys:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[key]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _terminate(conn: Any, loop: asyncio.AbstractEventLoop | None) -> None:
    if loop is None or loop.is_closed():
        with contextlib.suppress(Exception):
            conn.terminate()
    else:
        loop.call_soon_threadsafe(conn.terminate)
