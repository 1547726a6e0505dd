"""The store on S3 (s3fs): conditional requests make its create, rename, delete and lock
race-safe between processes, as ``link``, ``rename`` and ``flock`` are on a local disk.

- ``create`` is one PUT with ``If-None-Match: *``: of several creators of a name, exactly one
  succeeds (idempotency keys).
- ``unlink`` deletes with ``If-Match`` the version it has just seen: of several deleters,
  exactly one is told the file was there.
- ``rename`` (copy, then delete) learns the source's ETag, writes the destination, then deletes
  the source with ``If-Match: <ETag>``: of several renames of one source, exactly one delete
  succeeds, and each loser deletes the copy it wrote. A mover killed between its two steps
  leaves the task in both places; it then runs again, which at-least-once delivery allows.
- ``locked`` creates a lock object with ``If-None-Match: *`` holding its expiry, and deletes it
  with ``If-Match`` on its own ETag. A holder that died leaves it behind: once expired
  (``LOCK_WAIT`` after it was taken, by the clocks of the hosts involved) a waiter takes it over
  with ``If-Match`` on the ETag it read, so of several waiters one wins.

The service must honour ``If-None-Match`` and ``If-Match`` on PUT and ``If-Match`` on DELETE
(AWS S3 does; so does moto, which the tests run against).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from omniq.backends.file.store import LOCK_WAIT, _FsspecStore, _guard
from omniq.errors import StorageError

__all__ = ["S3Store"]

# A destination every mover of a source names alike (a final task's one file): whoever wins
# wrote the same bytes there, so a loser must not delete it.
_SHARED_HOMES = ("queue/done/",)
_CONFLICT_RETRIES = 8


class S3Store(_FsspecStore):
    """:class:`~omniq.backends.file.store.Store` on an ``s3fs.S3FileSystem``."""

    def _key(self, rel: str) -> dict[str, str]:
        bucket, key, _ = self.fs.split_path(self._p(rel))
        return {"Bucket": bucket, "Key": key}

    def _put(self, rel: str, data: bytes, **condition: str) -> str:
        """A conditional PUT; the new ETag."""
        for _ in range(_CONFLICT_RETRIES):
            try:
                return self.fs.pipe_file(self._p(rel), data, **condition)["ETag"]
            except OSError as exc:
                # AWS answers 409 to a conditional PUT racing another one: try again, and learn
                # from the next answer which one won.
                if _error_code(exc) != "ConditionalRequestConflict":
                    raise
        raise StorageError(f"file storage: {rel!r}: conditional writes kept conflicting")

    def create(self, rel: str, data: bytes) -> bool:
        with self._box.lock, _guard("create", rel):
            try:
                self._put(rel, data, IfNoneMatch="*")
            except FileExistsError:
                return False
            return True

    def unlink(self, rel: str) -> bool:
        # S3 answers a DELETE of a missing key with success: delete the version just seen, so
        # of several deleters exactly one learns it was there.
        with self._box.lock, _guard("delete", rel):
            try:
                while True:
                    etag = self.fs.call_s3("head_object", **self._key(rel))["ETag"]
                    try:
                        self.fs.call_s3("delete_object", IfMatch=etag, **self._key(rel))
                        return True
                    except OSError as exc:
                        if not _precondition_failed(exc):
                            raise
                        # replaced meanwhile: delete the new version
            except FileNotFoundError:
                return False
            finally:
                self.fs.invalidate_cache(self._p(rel))

    def rename(self, src: str, dst: str) -> bool:
        with self._box.lock, _guard("rename", src):
            try:
                etag = self.fs.call_s3("head_object", **self._key(src))["ETag"]
                data = self.fs.cat_file(self._p(src))
            except FileNotFoundError:
                return False
            self.fs.pipe_file(self._p(dst), data)
            try:
                self.fs.call_s3("delete_object", IfMatch=etag, **self._key(src))
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError) and not _precondition_failed(exc):
                    raise
                if not dst.startswith(_SHARED_HOMES):
                    self.fs.rm_file(self._p(dst))  # another mover won: take our copy back
                return False
            finally:
                self.fs.invalidate_cache(self._p(src))
            return True

    @contextlib.contextmanager
    def locked(self, rel: str) -> Iterator[None]:
        # This process's threads queue on the location's lock; processes on the lock object.
        if not self._box.lock.acquire(timeout=LOCK_WAIT):
            raise StorageError(f"file storage: lock {rel!r} still taken after {LOCK_WAIT:g} s")
        try:
            with _guard("lock", rel):
                etag = self._take_lock(rel, time.monotonic() + LOCK_WAIT)
            try:
                yield
            finally:
                with _guard("unlock", rel), contextlib.suppress(FileNotFoundError):
                    try:
                        self.fs.call_s3("delete_object", IfMatch=etag, **self._key(rel))
                    except OSError as exc:
                        if not _precondition_failed(exc):
                            raise  # else: taken over after it expired, no longer ours
        finally:
            self._box.lock.release()

    def _take_lock(self, rel: str, deadline: float) -> str:
        """Create the lock object, or take over an expired one; its ETag once held."""
        delay = 0.005
        while True:
            mine = f"{time.time() + LOCK_WAIT:.6f}".encode()
            try:
                return self._put(rel, mine, IfNoneMatch="*")
            except FileExistsError:
                pass
            try:
                etag = self.fs.call_s3("head_object", **self._key(rel))["ETag"]
                held = self.fs.cat_file(self._p(rel))
            except FileNotFoundError:
                continue  # released meanwhile
            try:
                held_until = float(held or 0)
            except ValueError:
                held_until = 0.0  # unreadable: treat as expired
            if held_until < time.time():
                try:
                    return self._put(rel, mine, IfMatch=etag)
                except OSError as exc:
                    if not _precondition_failed(exc) and not isinstance(exc, FileNotFoundError):
                        raise
                    continue  # another waiter took it over, or it was released
            if time.monotonic() >= deadline:
                raise StorageError(f"file storage: lock {rel!r} still taken after {LOCK_WAIT:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code behind s3fs's ``OSError`` (botocore's error is its cause)."""
    cause: Any = exc.__cause__
    return getattr(cause, "response", {}).get("Error", {}).get("Code")


def _precondition_failed(exc: BaseException) -> bool:
    """Whether s3fs's error came from a failed ``If-Match`` (HTTP 412)."""
    return _error_code(exc) in ("PreconditionFailed", "412")
