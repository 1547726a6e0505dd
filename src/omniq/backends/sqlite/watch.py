"""Wake-ups across processes on one SQLite database file.

SQLite has no notifications, but every commit in WAL mode rewrites the header of the WAL index,
which lives in the shared-memory file beside the database (``<db>-shm``; its layout is part of
SQLite's documented file format), and ``PRAGMA data_version`` read on one connection changes
whenever another connection has committed. So each process has one :class:`Watcher` per
database file: a thread with its own connection that looks every 2 ms (at the header, mapped
into memory: no system call; at ``data_version`` where it cannot be mapped) while some waiter of
this process is subscribed to a watched :class:`~omniq._notify.Signal`, and on a change notifies
those waiters (each signal's probe picks whom: every idle worker, or the result waiters whose
results now exist). With nobody waiting it blocks; after a while without waiters it closes its
connection and ends. In-process writers keep notifying their signals directly; the watcher adds
the other processes' commits (and, harmlessly, this process's own).
"""

from __future__ import annotations

import logging
import mmap
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
# 1 ms on average. Measured idle cost of the look alone: ~0.5% of a core reading the mapped
# header, ~1.2% reading data_version (1 ms: ~2.1%).
INTERVAL_S = 0.002
_HEADER = 48  # bytes of the WAL index header's first copy (it holds a per-commit counter)
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
                except (sqlite3.Error, OSError, ValueError):
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
    """The watcher's view of the database: a mark that changes with every commit."""

    def __init__(self, path: str) -> None:
        # mode=rw: never create the file (the components' own connection does, with its modes).
        uri = f"file:{urllib.parse.quote(path)}?mode=rw"
        self.conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
        self._cursor = self.conn.cursor()
        self._view: mmap.mmap | None = None
        try:
            self.mark()  # a read: the WAL index exists (and stays while this connection is open)
            with open(path + "-shm", "rb") as shm:
                self._view = mmap.mmap(shm.fileno(), _HEADER, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            log.debug("no WAL index to map for %s: watching data_version", path, exc_info=True)
        except BaseException:
            self.conn.close()
            raise

    def mark(self) -> object:
        if self._view is not None:
            return self._view[:_HEADER]
        return self._cursor.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
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
