"""In-process wake-ups that work across threads and event loops.

Backends that live in this process (memory, and SQLite/file when the writer is in the same
process) use these to wake idle workers and result waiters at once; SQLite's watcher
(``omniq.backends.sqlite.watch``) notifies them of other processes' commits too.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Hashable, Iterable

from omniq._tasks import wait_within

__all__ = ["Signal", "channel"]


class Signal:
    """Waiters keyed by any hashable; ``notify`` wakes those of the given keys (or all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: defaultdict[
            Hashable, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
        ]
        self._waiters = defaultdict(set)

    def subscribe(self, key: Hashable = None) -> asyncio.Future[None]:
        """A future resolved by the next ``notify`` of ``key``; subscribe before checking state."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            self._waiters[key].add(entry)
        future.add_done_callback(lambda _: self._discard(key, entry))
        return future

    async def wait(self, future: asyncio.Future[None], timeout: float | None) -> bool:
        """Wait for a subscribed future; False on timeout."""
        return await wait_within(future, timeout)

    def waited(self) -> list[Hashable]:
        """The keys someone waits for now (on a loop still open)."""
        with self._lock:
            return [
                key
                for key, entries in self._waiters.items()
                if any(not loop.is_closed() for loop, _ in entries)
            ]

    def notify(self, keys: Iterable[Hashable] | None = None) -> None:
        with self._lock:
            if keys is None:
                entries = [e for waiters in self._waiters.values() for e in waiters]
                self._waiters.clear()
            else:
                entries = []
                for key in keys:
                    waiters = self._waiters.pop(key, None)
                    if waiters:
                        entries.extend(waiters)
        for loop, future in entries:
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(_resolve, future)

    def _discard(
        self, key: Hashable, entry: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
    ) -> None:
        with self._lock:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(entry)
                if not waiters:
                    del self._waiters[key]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_channels: dict[Hashable, Signal] = {}
_channels_lock = threading.Lock()


def channel(name: Hashable) -> Signal:
    """The process-wide signal of that name (a storage location, say)."""
    with _channels_lock:
        signal = _channels.get(name)
        if signal is None:
            signal = _channels[name] = Signal()
        return signal
