"""A project directory on any fsspec filesystem, reduced to the few operations the file backend
builds on: list, read, atomic write, exclusive create, rename-as-claim, unlink, and an exclusive
lock held over a few of them (records' read-compare-write).

Local disk goes straight to :mod:`os`, where ``rename`` is atomic between processes (exactly one
of several renames of the same source succeeds) and ``link`` creates a file exclusively with its
full content; :meth:`Store.locked` is an ``flock`` on a lock file (``msvcrt.locking`` where there
is no ``fcntl``), which excludes other processes and other threads alike, and which the kernel
releases when its holder dies. On S3, conditional writes give ``create``, ``rename``,
``unlink`` and :meth:`Store.locked` the same guarantees (:mod:`.s3`). Other filesystems
(``memory://``, ``gs://``, ...) give none across processes; there every operation, and every
:meth:`Store.locked` section, runs under one lock per location, which makes them atomic between
the threads of this process only.

Every method blocks: call them from a worker thread, never on the event loop. "Not found" is a
normal answer (``None``/``False``/``[]``); any other ``OSError`` becomes a
:class:`~omniq.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from omniq._permissions import PRIVATE, Modes, makedirs, open_new, warn_if_shared
from omniq._redact import redact
from omniq.errors import ConfigError, MissingDependencyError, StorageError

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["LOCK_WAIT", "Store", "next_seq", "open_store", "safe_name"]

_NAME_MAX = 150
LOCK_WAIT = 30.0  # seconds Store.locked waits for its lock before giving up with a StorageError
# "Held by someone else" from flock (EWOULDBLOCK) or msvcrt.locking (EACCES, EDEADLOCK).
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK}


def safe_name(name: str) -> str:
    """``name`` as one path segment: percent-encoded, never containing ``/`` or ``.``.

    Overlong names are replaced by a digest, so every name fits a file name.
    """
    encoded = quote(name, safe="-_").replace(".", "%2E")
    if len(encoded) > _NAME_MAX:
        encoded = "~" + hashlib.sha256(name.encode()).hexdigest()
    return encoded


_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> int:
    """A process-wide strictly increasing number close to ``time.time_ns()``."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(time.time_ns(), _last_seq + 1)
        return _last_seq


class _LockBox:
    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.RLock()


_locks: dict[str, _LockBox] = {}
_locks_guard = threading.Lock()


def _lock_for(url: str) -> _LockBox:
    with _locks_guard:
        box = _locks.get(url)
        if box is None:
            box = _locks[url] = _LockBox()
        return box


# Local lock files: one in-process gate per path, so that this process's threads queue for the
# file lock instead of polling it.
_gates: dict[str, threading.Lock] = {}
_gates_guard = threading.Lock()


def _gate_for(path: str) -> threading.Lock:
    with _gates_guard:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = threading.Lock()
        return gate


def _reset_locks() -> None:
    # A lock held by another thread at fork() would stay held forever in the child.
    global _seq_lock, _locks_guard, _gates_guard
    _seq_lock, _locks_guard = threading.Lock(), threading.Lock()
    for box in _locks.values():
        box.lock = threading.RLock()
    _gates_guard = threading.Lock()
    _gates.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks)


def open_store(
    base_dir: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None,
    project: str,
    modes: Modes = PRIVATE,
) -> Store:
    """The store of ``project`` under ``base_dir`` (a local path or an fsspec URL); on a local
    disk, what it creates gets ``modes``."""
    if not isinstance(base_dir, (str, os.PathLike)) or not str(base_dir):
        raise ConfigError(f"base_dir must be a path or an fsspec URL, got {base_dir!r}")
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ConfigError(f"storage_options must be a dict, got {storage_options!r}")
    try:
        fs, root = url_to_fs(str(base_dir), **dict(storage_options or {}))
    except ImportError as exc:
        if str(base_dir).startswith(("s3://", "s3a://")):
            raise MissingDependencyError("s3fs", "s3") from exc
        raise ConfigError(f"base_dir {redact(str(base_dir))!r}: {redact(str(exc))}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"base_dir {redact(str(base_dir))!r}: {redact(str(exc))}") from exc
    root = root.rstrip("/") or "/"
    url = fs.unstrip_protocol(root)
    if isinstance(fs, LocalFileSystem):
        root = os.path.abspath(root)
        warn_if_shared(root)
        return _LocalStore(url, os.path.join(root, safe_name(project)), modes)
    base = posixpath.join(root, safe_name(project))
    if "s3" in _protocols(fs):
        from omniq.backends.file.s3 import S3Store

        return S3Store(url, base, fs)
    return _FsspecStore(url, base, fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class Store:
    """Blocking file operations on paths relative to one project directory."""

    local: bool = False

    def __init__(self, url: str, base: str) -> None:
        self.url = url  # the root location, identifying it for in-process wake-ups
        self.base = base

    # Paths are "/"-joined relative names like "queue/done/<id>".
    def listdir(self, rel: str) -> list[str]:
        """Names in a directory (unsorted); [] when it does not exist."""
        raise NotImplementedError

    def read(self, rel: str, size: int = -1) -> bytes | None:
        """The content (its first ``size`` bytes when given), or None."""
        raise NotImplementedError

    def write(self, rel: str, data: bytes) -> None:
        """Create or replace a file; readers see the old or the new content, never a mix."""
        raise NotImplementedError

    def create(self, rel: str, data: bytes) -> bool:
        """Create a file with ``data`` only if the name is free; True if this call made it."""
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> bool:
        """Move ``src`` to ``dst`` (replacing it); False if ``src`` is gone (someone else won)."""
        raise NotImplementedError

    def unlink(self, rel: str) -> bool:
        """Delete a file; False if it was not there."""
        raise NotImplementedError

    def rmtree(self, rel: str) -> None:
        """Delete a directory and everything below it."""
        raise NotImplementedError

    def makedirs(self, rel: str) -> None:
        """Create a directory and its parents (nothing on flat object stores)."""

    def locked(self, rel: str) -> contextlib.AbstractContextManager[None]:
        """Hold the exclusive lock named ``rel`` (a lock file on local disk) for the block:
        between processes on a local disk, between this process's threads elsewhere. Raises
        StorageError after waiting ``LOCK_WAIT`` seconds for it."""
        raise NotImplementedError

    def sweep_tmp(self, older_than: float) -> None:
        """Delete temporary files left by crashed writers."""

    def mtime_ns(self, rel: str) -> int | None:
        """When a directory's entries last changed (0 if it does not exist); None where the
        filesystem cannot tell, so callers fall back to polling."""
        return None

    def trash_name(self) -> str:
        """A fresh private name (for moving a file aside before checking it)."""
        return f"tmp/{uuid.uuid4().hex}.trash"


class _LocalStore(Store):
    local = True

    def __init__(self, url: str, base: str, modes: Modes) -> None:
        super().__init__(url, base)
        self.modes = modes

    def _p(self, rel: str) -> str:
        return os.path.join(self.base, rel)

    def listdir(self, rel: str) -> list[str]:
        with _guard("list", rel):
            try:
                return os.listdir(self._p(rel))
            except (FileNotFoundError, NotADirectoryError):
                return []

    def read(self, rel: str, size: int = -1) -> bytes | None:
        with _guard("read", rel):
            try:
                with open(self._p(rel), "rb") as f:
                    return f.read(size)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

    def _tmp(self, data: bytes) -> str:
        tmp = self._p(f"tmp/{uuid.uuid4().hex}")
        try:
            f = open_new(tmp, self.modes.file)
        except FileNotFoundError:
            makedirs(os.path.dirname(tmp), self.modes.dir)
            f = open_new(tmp, self.modes.file)
        with f:
            f.write(data)
        return tmp

    def write(self, rel: str, data: bytes) -> None:
        with _guard("write", rel):
            tmp = self._tmp(data)
            try:
                _replace(tmp, self._p(rel), self.modes.dir)
            except BaseException:
                _silent_unlink(tmp)
                raise

    def create(self, rel: str, data: bytes) -> bool:
        with _guard("create", rel):
            tmp = self._tmp(data)
            path = self._p(rel)
            try:
                # link() publishes the complete file under the name, or fails if it is taken.
                try:
                    os.link(tmp, path)
                except FileNotFoundError:
                    makedirs(os.path.dirname(path), self.modes.dir)
                    os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            finally:
                _silent_unlink(tmp)

    def rename(self, src: str, dst: str) -> bool:
        with _guard("rename", src):
            source, target = self._p(src), self._p(dst)
            try:
                os.replace(source, target)
                return True
            except FileNotFoundError:
                if not os.path.lexists(source):
                    return False
            makedirs(os.path.dirname(target), self.modes.dir)
            try:
                os.replace(source, target)
                return True
            except FileNotFoundError:
                return False

    def unlink(self, rel: str) -> bool:
        with _guard("delete", rel):
            try:
                os.unlink(self._p(rel))
                return True
            except FileNotFoundError:
                return False

    def rmtree(self, rel: str) -> None:
        import shutil

        with _guard("delete", rel):
            shutil.rmtree(self._p(rel), ignore_errors=True)

    def makedirs(self, rel: str) -> None:
        with _guard("mkdir", rel):
            makedirs(self._p(rel), self.modes.dir)

    @contextlib.contextmanager
    def locked(self, rel: str) -> Iterator[None]:
        path = self._p(rel)
        deadline = time.monotonic() + LOCK_WAIT
        gate = _gate_for(path)
        if not gate.acquire(timeout=LOCK_WAIT):
            raise StorageError(f"file storage: lock {rel!r} still taken after {LOCK_WAIT:g} s")
        try:
            with _guard("lock", rel):
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, self.modes.file)
                except FileNotFoundError:
                    makedirs(os.path.dirname(path), self.modes.dir)
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, self.modes.file)
            try:
                with _guard("lock", rel):
                    _lock_file(fd, rel, deadline)
                try:
                    yield
                finally:
                    with _guard("unlock", rel):
                        _unlock_file(fd)
            finally:
                os.close(fd)
        finally:
            gate.release()

    def mtime_ns(self, rel: str) -> int | None:
        with _guard("stat", rel):
            try:
                return os.stat(self._p(rel)).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                return 0

    def sweep_tmp(self, older_than: float) -> None:
        cutoff = time.time() - older_than
        with _guard("list", "tmp"), contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._p("tmp")):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)


class _FsspecStore(Store):
    """Any other fsspec filesystem; each operation holds this location's in-process lock."""

    def __init__(self, url: str, base: str, fs: Any) -> None:
        super().__init__(url, base)
        self.fs = fs
        self._box = _lock_for(url)

    def _p(self, rel: str) -> str:
        return posixpath.join(self.base, rel)

    def listdir(self, rel: str) -> list[str]:
        with self._box.lock, _guard("list", rel):
            try:
                try:
                    entries = self.fs.ls(self._p(rel), detail=False, refresh=True)
                except TypeError:  # filesystems without a listing cache take no `refresh`
                    entries = self.fs.ls(self._p(rel), detail=False)
            except (FileNotFoundError, NotADirectoryError):
                return []
            return [posixpath.basename(e.rstrip("/")) for e in entries]

    def read(self, rel: str, size: int = -1) -> bytes | None:
        with self._box.lock, _guard("read", rel):
            try:
                if size >= 0:
                    return self.fs.cat_file(self._p(rel), start=0, end=size)
                return self.fs.cat_file(self._p(rel))
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

    def write(self, rel: str, data: bytes) -> None:
        # One PUT: object stores replace whole objects atomically; memory:// holds the lock.
        with self._box.lock, _guard("write", rel):
            self.fs.pipe_file(self._p(rel), data)

    def create(self, rel: str, data: bytes) -> bool:
        with self._box.lock, _guard("create", rel):
            if self.fs.isfile(self._p(rel)):
                return False
            self.fs.pipe_file(self._p(rel), data)
            return True

    def rename(self, src: str, dst: str) -> bool:
        # Copy and delete by hand: small files, and some filesystems' mv scans every key.
        with self._box.lock, _guard("rename", src):
            try:
                data = self.fs.cat_file(self._p(src))
            except (FileNotFoundError, IsADirectoryError):
                return False
            self.fs.pipe_file(self._p(dst), data)
            self.fs.rm_file(self._p(src))
            return True

    def unlink(self, rel: str) -> bool:
        with self._box.lock, _guard("delete", rel):
            try:
                self.fs.rm_file(self._p(rel))
                return True
            except FileNotFoundError:
                return False

    def rmtree(self, rel: str) -> None:
        with self._box.lock, _guard("delete", rel), contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._p(rel), recursive=True)

    def makedirs(self, rel: str) -> None:
        with self._box.lock, _guard("mkdir", rel):
            self.fs.makedirs(self._p(rel), exist_ok=True)

    @contextlib.contextmanager
    def locked(self, rel: str) -> Iterator[None]:
        # No lock another process would see: this location's lock, held for the whole block.
        if not self._box.lock.acquire(timeout=LOCK_WAIT):
            raise StorageError(f"file storage: lock {rel!r} still taken after {LOCK_WAIT:g} s")
        try:
            yield
        finally:
            self._box.lock.release()


def _replace(tmp: str, path: str, dir_mode: int) -> None:
    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        makedirs(os.path.dirname(path), dir_mode)
        os.replace(tmp, path)


def _lock_file(fd: int, rel: str, deadline: float) -> None:
    """Take the exclusive lock on an open lock file, polling (a blocked thread could not be
    stopped) until ``deadline``. Locks of one process's separate opens exclude each other too."""
    delay = 0.0005
    while True:
        try:
            if sys.platform == "win32":
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
        if time.monotonic() >= deadline:
            raise StorageError(f"file storage: lock {rel!r} still taken after {LOCK_WAIT:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _unlock_file(fd: int) -> None:
    if sys.platform == "win32":
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _silent_unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def _guard(op: str, rel: str) -> Iterator[None]:
    """Driver errors become StorageError at this boundary."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"file storage: cannot {op} {rel!r}: {exc}") from exc
