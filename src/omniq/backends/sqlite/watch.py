"""Wake-ups across processes on one SQLite database file.

SQLite has no notifications, but ``PRAGMA data_version`` read on one connection changes whenever
another connection, of any process, has committed, and reading it does no I/O (it looks at the
WAL index in shared memory). So each process has one :class:`Watcher` per database file: a
thread with its own connection that reads it every 2 ms while some waiter of this process is
subscribed to a watched :class:`~omniq._notify.Signal`, and on a change notifies those waiters
(each signal's probe picks whom: every idle worker, or the result waiters whose results now
exist). With nobody waiting it blocks; after a while without waiters it closes its connection
and ends. In-process writers keep notifying their signals directly; the watcher adds the other
processes' commits (and, harmlessly, this process's own).

The watcher never opens the database's files itself (say, to map the WAL index and read its
header without SQLite): closing any descriptor of a file drops every POSIX lock the process
holds on it, including those of this process's other SQLite connections.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Hashable, Iterable

from omniq._notify import Signal

__all__ = ["Probe", "Watcher", "everyone", "watcher"]

log = logging.getLogger("omniq")

# 2 ms: a round trip has two cross-process hops (task to worker, result to client), each waiting
# 1 ms on average. Measured cost of the looks alone: ~1% of a core (1 ms: ~2%).
INTERVAL_S = 0.002
_LOOKS = 50  # looks between two questions whether anyone still waits (100 ms)
_RETRY_S = 0.1  # after a failed look (the file not created yet, say)
_IDLE_EXIT_S = 10.0  # without waiters this long, the thread closes its connection and ends

Probe = Callable[[sqlite3.Connection, list[Hashable]], Iterable[Hashable] | None]
"""Given the watcher's connection and a signal's waited keys, the keys to notify (None: all)."""


def everyone(conn: sqlite3.Connection, keys: list[Hashable]) -> None:
    """The probe that wakes every waiter of its signal."""
    return None


class Watcher:
    """Notifies watched signals when another connection commits to the database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._probes: dict[Signal, Probe] = {}
        self._running = False

    def watch(self, signal: Signal, probe: Probe = everyone) -> None:
        """Have ``signal``'s waiters (those ``probe`` picks) notified of other connections'
        commits from now on; call it after subscribing, before checking the state."""
        with self._lock:
            self._probes[signal] = probe
            # Set under the lock, so a thread deciding to end sees it (see _idle).
            self._wake.set()
            if not self._running:
                self._running = True
                name = f"omniq-sqlite-watch {self.path}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        look: _Look | None = None
        seen: object = None  # None: every waiter is woken once (it may predate our first look)
        try:
            while True:
                self._wake.clear()
                if not self._watched():
                    if self._idle():
                        return
                    continue
                try:
                    if look is None:
                        look = _Look(self.path)
                    # Whether anyone still waits is asked again only every _LOOKS looks (and on
                    # a change): per look, that question would cost more than the look itself.
                    for _ in range(_LOOKS):
                        mark = look.mark()
                        if mark != seen:
                            for signal, probe, keys in self._watched():
                                signal.notify(None if seen is None else _targets(look, probe, keys))
                            seen = mark
                        time.sleep(INTERVAL_S)
                except sqlite3.Error:
                    # Not there yet, or broken: waiters fall back on their own timeouts.
                    log.debug("watching SQLite database %s failed", self.path, exc_info=True)
                    if look is not None:
                        look.close()
                    look, seen = None, None
                    time.sleep(_RETRY_S)
        finally:
            if look is not None:
                look.close()

    def _watched(self) -> list[tuple[Signal, Probe, list[Hashable]]]:
        with self._lock:
            probes = list(self._probes.items())
        return [(signal, probe, keys) for signal, probe in probes if (keys := signal.waited())]

    def _idle(self) -> bool:
        """Block until someone subscribes; True when none has for a while and the thread ends."""
        if self._wake.wait(_IDLE_EXIT_S):
            return False
        with self._lock:
            if self._wake.is_set():
                return False
            self._running = False
            return True


def _targets(look: _Look, probe: Probe, keys: list[Hashable]) -> Iterable[Hashable] | None:
    try:
        return probe(look.conn, keys)
    except sqlite3.Error:  # let the waiters look for themselves
        log.debug("probing SQLite database failed", exc_info=True)
        return None


class _Look:
    """The watcher's view of the database: a mark that changes with every other commit."""

    def __init__(self, path: str) -> None:
        # mode=rw: never create the file (the components' own connection does, with its modes).
        uri = f"file:{urllib.parse.quote(path)}?mode=rw"
        self.conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
        self._cursor = self.conn.cursor()

    def mark(self) -> int:
        return int(self._cursor.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


_watchers: dict[tuple[int, str], Watcher] = {}
_watchers_lock = threading.Lock()


def watcher(path: str) -> Watcher:
    """This process's watcher of a database file (a forked child gets its own)."""
    key = (os.getpid(), path)
    with _watchers_lock:
        found = _watchers.get(key)
        if found is None:
            found = _watchers[key] = Watcher(path)
        return found
