"""The file task queue's records: small versioned documents (schedules, worker heartbeats) by
kind and key, with the compare-and-set that fires each scheduled run once. The layout, the
guarantees and the crash reasoning are in :mod:`.queue`; everything here blocks and
runs in worker threads.

Reads take no lock: a record file is only ever replaced whole (``Store.write``), so a reader
sees one version or the next, never a mix. Writes (put, swap, delete) hold the kind's lock
(``Store.locked``) from reading the stored version to replacing or removing the file, so two
writers never both act on one version.
"""

from __future__ import annotations

import logging

import msgspec

from omniq.backends.file import layout as L
from omniq.backends.file.store import Store

__all__ = ["RecordDir"]

log = logging.getLogger("omniq.backends.file.queue")


class RecordDir:
    """The records of one project directory."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _folder(kind: str) -> str:
        return f"{L.RECORDS}/{L.record_name(kind)}"

    def _lock(self, kind: str) -> str:
        # Beside the kind's folder: encoded names hold no ".", so this is no kind's folder.
        return f"{self._folder(kind)}.lock"

    def _read(self, rel: str, key: str | None) -> tuple[str, int, bytes] | None:
        """(key, version, data) of a record file; None if absent, corrupt (logged: it counts as
        absent, so the next put or create replaces it), or holding another key."""
        raw = self.store.read(rel)
        if raw is None:
            return None
        try:
            stored = L.decode_doc(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("corrupt record file %s: %s", rel, exc)
            return None
        if key is not None and stored[0] != key:
            return None  # only a digest name (over-long keys) could be shared
        return stored

    def get(self, kind: str, key: str) -> tuple[int, bytes] | None:
        stored = self._read(f"{self._folder(kind)}/{L.record_name(key)}", key)
        return None if stored is None else (stored[1], stored[2])

    def list(self, kind: str) -> list[tuple[str, int, bytes]]:
        """Every record of ``kind``, each as it stood when read (a snapshot per record)."""
        folder = self._folder(kind)
        found = []
        for name in self.store.listdir(folder):
            if "." in name:
                continue  # not a record (none has a "." in its name)
            stored = self._read(f"{folder}/{name}", None)
            if stored is not None:
                found.append(stored)
        return sorted(found)

    def put(self, kind: str, key: str, data: bytes) -> int:
        rel = f"{self._folder(kind)}/{L.record_name(key)}"
        with self.store.locked(self._lock(kind)):
            stored = self._read(rel, key)
            version = 1 if stored is None else stored[1] + 1
            self.store.write(rel, L.encode_doc(key, version, data))
        return version

    def swap(self, kind: str, key: str, data: bytes, version: int) -> int | None:
        rel = f"{self._folder(kind)}/{L.record_name(key)}"
        with self.store.locked(self._lock(kind)):
            stored = self._read(rel, key)
            if (0 if stored is None else stored[1]) != version:
                return None
            self.store.write(rel, L.encode_doc(key, version + 1, data))  # the commit point
        return version + 1

    def delete(self, kind: str, key: str) -> bool:
        rel = f"{self._folder(kind)}/{L.record_name(key)}"
        with self.store.locked(self._lock(kind)):
            return self.store.unlink(rel)
