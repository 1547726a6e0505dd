"""One thread per SQLite connection, driven from any event loop.

A :class:`Runner` owns a private thread that opens the ``sqlite3`` connection on first use and
is the only thread that ever touches it. ``await runner.run(fn, *args)`` queues ``fn(conn,
*args)`` on that thread (one whole transaction per call, so one thread hop per operation) and
resolves a future on the caller's running loop. No loop is captured at construction, so the same
runner serves any loop. After ``fork`` the child never touches the parent's thread or
connection: it opens its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from omniq._permissions import Modes, create_file, makedirs, modes_of, warn_if_shared
from omniq.backends.sqlite import database_path
from omniq.backends.sqlite.sql import SCHEMA, SCHEMA_VERSION, statements
from omniq.errors import StorageError

if TYPE_CHECKING:
    from typing import Unpack

    from omniq.backends.sqlite.options import SQLiteConnection
    from omniq.config import Settings

__all__ = ["Connected", "Runner", "SharedRunner", "data_version", "write"]

T = TypeVar("T")
log = logging.getLogger("omniq")

BUSY_TIMEOUT_S = 10.0
_MIN_VERSION = (3, 35, 0)  # UPDATE ... RETURNING
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_RETRIES = 5
_CLOSE = object()
_GROUP_MAX = 64  # jobs in one group commit

_Job = tuple[Any, tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class Runner:
    """Runs functions of a private ``sqlite3`` connection on the thread that owns it."""

    def __init__(self, path: str, modes: Modes) -> None:
        self.path = path
        self.modes = modes
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._jobs: queue.SimpleQueue[_Job] | None = None
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on the connection's thread; sqlite3 errors become StorageError.

        If the caller is cancelled while ``fn`` runs, ``fn`` still completes (its transaction
        commits); if it is cancelled before ``fn`` starts, ``fn`` is skipped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submit((fn, args, loop, future), reopen=True)
        try:
            return await future
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite database {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection and join its thread (a later ``run`` opens it again)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        thread = self._submit((_CLOSE, (), loop, done), reopen=False)
        if thread is not None:
            await done
            thread.join()  # it has closed the connection and is returning: no wait

    def _submit(self, job: _Job, *, reopen: bool) -> threading.Thread | None:
        """Queue a job (starting the thread if needed and ``reopen``); returns the thread.

        Queueing happens under the lock, so no job can land behind a close marker.
        """
        if self._pid != os.getpid():
            self._forget_parent()
        with self._lock:
            jobs, thread = self._jobs, self._thread
            if jobs is None or thread is None:
                if not reopen:
                    return None
                jobs = queue.SimpleQueue()
                thread = threading.Thread(
                    target=_serve,
                    args=(self.path, self.modes, jobs),
                    name="omniq-sqlite",
                    daemon=True,
                )
                thread.start()
                # An unclosed runner stops its thread when collected (the thread holds no
                # reference to the runner, only to the job queue).
                weakref.finalize(self, jobs.put, cast(_Job, (_CLOSE, (), None, None)))
                self._jobs, self._thread = jobs, thread
            jobs.put(job)
            if job[0] is _CLOSE:
                self._jobs = self._thread = None
            return thread

    def _forget_parent(self) -> None:
        # In a forked child the parent's thread does not exist, its lock may be held forever and
        # its connection must not be used (nor closed: that could release the parent's locks).
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._jobs = self._thread = None


class SharedRunner:
    """A handle on this process's one :class:`Runner` for a database file.

    Every component on the same file in one process (queue, results, events) shares a single
    connection thread, so their transactions queue up in that thread instead of contending for
    SQLite's write lock (whose busy handler sleeps for milliseconds). The runner is closed when
    the last handle is closed.
    """

    _registry: dict[tuple[int, str], tuple[Runner, int]] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: str, modes: Modes) -> None:
        self.path = path
        self.modes = modes  # of the files it creates (the first opener's, if several differ)
        self._runner: Runner | None = None
        self._pid = 0

    def _acquire(self) -> Runner:
        key = (os.getpid(), self.path)
        with self._registry_lock:
            runner, users = self._registry.get(key, (None, 0))
            if runner is None:
                runner = Runner(self.path, self.modes)
            self._registry[key] = (runner, users + 1)
        self._runner, self._pid = runner, key[0]
        return runner

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """As :meth:`Runner.run`, on the shared connection."""
        runner = self._runner
        if runner is None or self._pid != os.getpid():
            runner = self._acquire()
        return await runner.run(fn, *args)

    async def close(self) -> None:
        """Release this handle; the last one closes the connection."""
        runner, self._runner = self._runner, None
        if runner is None or self._pid != os.getpid():
            return
        key = (self._pid, self.path)
        with self._registry_lock:
            _, users = self._registry.get(key, (runner, 1))
            if users <= 1:
                self._registry.pop(key, None)
            else:
                self._registry[key] = (runner, users - 1)
        if users <= 1:
            await runner.close()


def _serve(path: str, modes: Modes, jobs: queue.SimpleQueue[_Job]) -> None:
    conn: sqlite3.Connection | None = None
    try:
        while True:
            batch = [jobs.get()]
            # Group commit: whatever is already queued runs in one transaction, so a busy
            # worker's claim, result writes and finishes share one commit (each job keeps its
            # own savepoint, so one job's error undoes only its own writes).
            # (This thread is the queue's only reader: a queue found non-empty stays so; a lone
            # job is not charged a raised queue.Empty.)
            while len(batch) < _GROUP_MAX and batch[-1][0] is not _CLOSE and not jobs.empty():
                batch.append(jobs.get_nowait())
            closing = batch[-1] if batch[-1][0] is _CLOSE else None
            live = [job for job in batch if job[0] is not _CLOSE and not job[3].cancelled()]
            if live:
                try:
                    if conn is None:
                        conn = _retry(_open, path, modes)
                except Exception as exc:
                    for _, _, loop, future in live:
                        _deliver(loop, future, None, exc)
                else:
                    _run_jobs(conn, live)
            if closing is not None:
                if conn is not None:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        log.warning("closing SQLite database %s failed", path, exc_info=True)
                    conn = None
                if closing[2] is not None:
                    _deliver(closing[2], closing[3], None, None)
                return
    finally:
        if conn is not None:
            conn.close()


def _run_jobs(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Run jobs, several in one transaction when there are several; deliver after the commit."""
    if len(jobs) > 1:
        outcomes: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, Exception | None]]
        outcomes = []
        try:
            _retry(conn.execute, "BEGIN IMMEDIATE")
            for fn, args, loop, future in jobs:
                try:
                    outcomes.append((loop, future, fn(conn, *args), None))
                except Exception as exc:  # its savepoint was rolled back; the others stand
                    outcomes.append((loop, future, None, exc))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.debug("group commit failed; running %d jobs one by one", len(jobs), exc_info=True)
        else:
            for outcome in outcomes:
                _deliver(*outcome)
            return
    for fn, args, loop, future in jobs:
        try:
            result = _retry(fn, conn, *args)
        except Exception as exc:  # handed to the awaiting caller, not swallowed
            _deliver(loop, future, None, exc)
        else:
            _deliver(loop, future, result, None)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(_settle, future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _retry(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn``; when SQLite reports busy/locked despite the busy timeout, retry it whole."""
    for attempt in range(_RETRIES):
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            if (
                getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY_CODES
                or attempt == _RETRIES - 1
            ):
                raise
            log.debug("SQLite busy (%s), retrying %s", exc, getattr(fn, "__name__", fn))
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


def _open(path: str, modes: Modes) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < _MIN_VERSION:
        raise StorageError(
            f"OmniQ's SQLite backend needs SQLite >= 3.35 (for RETURNING); "
            f"this Python links SQLite {sqlite3.sqlite_version}"
        )
    directory = os.path.dirname(path)
    if directory:
        makedirs(directory, modes.dir)
        warn_if_shared(directory)
    create_file(path, modes.file)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, cached_statements=256
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        # Up to 16 MiB of page cache (allocated as used): random task ids make index inserts
        # touch pages all over the id index, which then stay in memory.
        conn.execute("PRAGMA cache_size = -16384")
        # Checkpoint every ~32 MiB of WAL rather than 4 MiB: each checkpoint fsyncs, and fewer,
        # larger ones keep them off the per-task cost. The WAL file is trimmed back to 64 MiB.
        conn.execute("PRAGMA wal_autocheckpoint = 8000")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        _ensure_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(SCHEMA["schema_version"]).fetchone()
    return int(row["value"]) if row is not None else 0


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    if (
        conn.execute(SCHEMA["meta_exists"]).fetchone() is not None
        and _schema_version(conn) == SCHEMA_VERSION
    ):
        return
    # Several processes may start at once: the write lock serialises them, the version check
    # inside it makes the losers skip the work.
    with write(conn):
        conn.execute(SCHEMA["meta_table"])
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"SQLite database {path} has OmniQ schema version {version}, newer than this "
                f"OmniQ's {SCHEMA_VERSION}: upgrade OmniQ"
            )
        if version < SCHEMA_VERSION:
            for statement in statements(SCHEMA["schema"]):
                conn.execute(statement)
            conn.execute(SCHEMA["set_schema_version"], (str(SCHEMA_VERSION),))


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front, so a reader never
    has to upgrade (the upgrade is what fails with SQLITE_BUSY instead of waiting). Inside a
    group commit it is a savepoint of the group's transaction."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT omniq_write")
        try:
            yield conn
            conn.execute("RELEASE omniq_write")
        except BaseException:
            conn.execute("ROLLBACK TO omniq_write")
            conn.execute("RELEASE omniq_write")
            raise
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection (of any process) commits to the database."""
    return int(conn.execute("PRAGMA data_version").fetchone()["data_version"])


class Connected:
    """Mixin of the SQLite components: the database file (``db_path``) and the connection thread
    shared with the process's other objects on it (set ``project_name`` and ``settings`` before
    ``_open``)."""

    project_name: str
    settings: Settings

    def _open(self, **connection: Unpack[SQLiteConnection]) -> None:
        self.db_path = database_path(self.settings, **connection)
        self._runner = SharedRunner(self.db_path, modes_of(self.settings))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.db_path} project={self.project_name!r}>"
