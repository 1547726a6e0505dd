"""Private files: what OmniQ creates on a local disk is for its owner only, by default.

Task arguments and results are often sensitive, and anyone who can write a task file or row can
make a worker run code. So directories are created ``DIR_MODE`` (0700) and files ``FILE_MODE``
(0600); the settings may relax that for a group sharing the storage. The process umask can
still remove bits. An existing storage directory that others may write to is warned about once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from typing import BinaryIO, NamedTuple

from omniq.config import Settings

__all__ = ["PRIVATE", "Modes", "create_file", "makedirs", "modes_of", "open_new", "warn_if_shared"]

logger = logging.getLogger("omniq.storage")

_warned: set[str] = set()
_warned_lock = threading.Lock()


class Modes(NamedTuple):
    """Permission bits of the files and directories OmniQ creates."""

    file: int = 0o600
    dir: int = 0o700


PRIVATE = Modes()


def modes_of(settings: Settings) -> Modes:
    return Modes(settings.FILE_MODE, settings.DIR_MODE)


def makedirs(path: str, mode: int) -> None:
    """``os.makedirs(path, exist_ok=True)``, every directory it creates with ``mode`` (Python's
    own gives ``mode`` to the last one only)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        makedirs(parent, mode)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)


def open_new(path: str, mode: int) -> BinaryIO:
    """A new file (the name must be free) opened for writing, created with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    return os.fdopen(fd, "wb")


def create_file(path: str, mode: int) -> None:
    """Create an empty file with ``mode`` unless one exists (SQLite then keeps its mode, and
    gives it to its -wal and -shm files)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))


def warn_if_shared(directory: str) -> None:
    """Log a warning (once per directory) if others may write to an existing ``directory``."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return
    if not mode & (stat.S_IWGRP | stat.S_IWOTH):
        return
    with _warned_lock:
        if directory in _warned:
            return
        _warned.add(directory)
    logger.warning(
        "storage directory %s is writable by %s (mode %o): other local users could read or "
        "replace task files and so run code on workers; restrict it (chmod go-w)",
        directory,
        "others" if mode & stat.S_IWOTH else "its group",
        stat.S_IMODE(mode),
    )
