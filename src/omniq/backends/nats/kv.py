"""Key-value operations on JetStream streams, as raw requests: compare-and-set writes (the
``Nats-Expected-Last-Subject-Sequence`` header), direct gets (also by wildcard), and scans of the
latest value of every matching key through a short-lived consumer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from omniq.backends.nats.layout import bucket_stream, kv_subject
from omniq.errors import StorageError

__all__ = [
    "ApiError",
    "CasConflict",
    "ConsumerGone",
    "Entry",
    "KeyValueOps",
    "Write",
    "delivery_info",
]

logger = logging.getLogger("omniq.nats")

_PULL_CHUNK = 1024
_CAS_CONFLICT = frozenset({10071, 10164})  # wrong last sequence (per subject / constant)
_json = msgspec.json.encode


class ApiError(StorageError):
    """JetStream refused a request."""

    def __init__(self, error: dict[str, Any], what: str) -> None:
        self.code = int(error.get("code", 0))
        self.err_code = int(error.get("err_code", 0))
        super().__init__(f"NATS JetStream: {what}: {error.get('description', error)}")


class CasConflict(StorageError):
    """A compare-and-set lost: the key changed since the revision that was read."""


class ConsumerGone(StorageError):
    """The consumer does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's latest value and its revision (stream sequence)."""

    key: str
    revision: int
    value: bytes
    deleted: bool = False  # a delete/purge marker (its revision is what a re-create expects)


def delivery_info(msg: Any) -> tuple[int, int]:
    """A delivered message's stream sequence and how many messages were pending behind it, read
    from its ack subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
    <time>.<pending>``, or the newer form with domain and account hash after ``ACK``) without
    building the driver's metadata objects."""
    tokens = msg.reply.split(".")
    offset = 0 if len(tokens) == 9 else 2
    return int(tokens[5 + offset]), int(tokens[8 + offset])


class _PubAck(msgspec.Struct):
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


@dataclass(frozen=True, slots=True)
class Write:
    """One key write: ``last`` = the expected revision (0: absent; None: any); ``purge`` writes
    a purge marker; ``ttl`` a per-message TTL (``"30s"``, ``"never"``)."""

    key: str
    value: bytes
    last: int | None = None
    ttl: str | None = None
    msg_id: str | None = None
    purge: bool = False

    def headers(self) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        if self.last is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(self.last)
        if self.ttl is not None:
            headers["Nats-TTL"] = self.ttl
        if self.msg_id is not None:
            headers["Nats-Msg-Id"] = self.msg_id
        if self.purge:
            headers["KV-Operation"] = "PURGE"
            headers["Nats-Rollup"] = "sub"
        return headers or None


def _write_outcome(msg: Any, bucket: str, key: str, last: int | None) -> int:
    headers = msg.headers
    if headers and headers.get("Status") == "503":
        raise StorageError(f"NATS: no stream stores {bucket}/{key} (bucket missing?)")
    ack = _decode_ack(msg.data)
    if ack.error is not None:
        if int(ack.error.get("err_code", 0)) in _CAS_CONFLICT:
            raise CasConflict(f"{bucket}/{key} changed since revision {last}")
        raise ApiError(ack.error, f"write {bucket}/{key}")
    return ack.seq


class KeyValueOps:
    """Key-value calls of :class:`.client.Client` (which provides the transport)."""

    request: Callable[..., Awaitable[Any]]
    requests: Callable[..., Awaitable[list[Any]]]
    api: Callable[..., Awaitable[dict[str, Any]]]
    pull: Callable[..., Awaitable[list[Any]]]
    release_inbox: Callable[[str], Awaitable[None]]
    spawn: Callable[[Any], None]

    async def kv_write_many(self, bucket: str, writes: Sequence[Write]) -> list[int | StorageError]:
        """Many key writes at once; each outcome is the new revision, a :class:`CasConflict` or
        another :class:`StorageError` (returned, not raised)."""
        items = [(kv_subject(bucket, w.key), w.value, w.headers()) for w in writes]
        outcomes: list[int | StorageError] = []
        for write, msg in zip(writes, await self.requests(items), strict=True):
            try:
                outcomes.append(_write_outcome(msg, bucket, write.key, write.last))
            except StorageError as exc:
                outcomes.append(exc)
        return outcomes

    async def kv_write(
        self,
        bucket: str,
        key: str,
        value: bytes,
        *,
        last: int | None = None,
        ttl: str | None = None,
        msg_id: str | None = None,
        purge: bool = False,
    ) -> int:
        """Write a key (``last``: only if its revision is still that, 0 = absent); returns the
        new revision. ``purge`` writes a purge marker that removes the key."""
        write = Write(key, value, last, ttl, msg_id, purge)
        msg = await self.request(kv_subject(bucket, key), value, write.headers())
        return _write_outcome(msg, bucket, key, last)

    async def kv_get(self, bucket: str, key: str, *, markers: bool = False) -> Entry | None:
        """The key's latest value, or None when absent or deleted (with ``markers``: a deleted
        key's marker as an entry with ``deleted`` set)."""
        stream = bucket_stream(bucket)
        msg = await self.request(f"$JS.API.DIRECT.GET.{stream}.{kv_subject(bucket, key)}")
        return _entry(msg, bucket, markers)

    async def kv_get_many(self, bucket: str, keys: Sequence[str]) -> list[Entry | None]:
        """The latest values of many keys at once (None where absent or deleted)."""
        stream = bucket_stream(bucket)
        items = [
            (f"$JS.API.DIRECT.GET.{stream}.{kv_subject(bucket, key)}", b"", None) for key in keys
        ]
        return [_entry(msg, bucket) for msg in await self.requests(items)]

    async def kv_find(self, bucket: str, pattern: str, *, markers: bool = False) -> Entry | None:
        """The latest value of the one key matching a wildcard pattern, or None (with
        ``markers``: the latest message of any matching key, a delete marker included)."""
        stream = bucket_stream(bucket)
        body = _json({"last_by_subj": kv_subject(bucket, pattern)})
        msg = await self.request(f"$JS.API.DIRECT.GET.{stream}", body)
        return _entry(msg, bucket, markers)

    async def kv_scan(self, bucket: str, pattern: str) -> list[Entry]:
        """The latest value of every live key matching ``pattern`` (a server-side filter),
        read through a short-lived consumer."""
        stream = bucket_stream(bucket)
        config = {
            "deliver_policy": "last_per_subject",
            "ack_policy": "none",
            "filter_subject": kv_subject(bucket, pattern),
            "mem_storage": True,
            "num_replicas": 1,
            "inactive_threshold": 30_000_000_000,
        }
        info = await self.api(
            f"CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config}
        )
        name, pending = info["name"], int(info.get("num_pending", 0))
        entries: list[Entry] = []
        try:
            left = pending
            while left > 0:
                msgs = await self.pull(stream, name, min(left, _PULL_CHUNK))
                if not msgs:
                    break
                left -= len(msgs)
                for msg in msgs:
                    headers = msg.headers or {}
                    if headers.get("KV-Operation") in ("DEL", "PURGE"):
                        continue
                    key = msg.subject[len(bucket) + 5 :]
                    entries.append(Entry(key, delivery_info(msg)[0], msg.data))
        finally:
            await self.release_inbox(name)
            self.spawn(self._delete_consumer(stream, name))
        return entries

    async def _delete_consumer(self, stream: str, name: str) -> None:
        try:
            await self.api(f"CONSUMER.DELETE.{stream}.{name}")
        except StorageError:
            logger.debug("deleting scan consumer %s failed (it expires anyway)", name)


def _entry(msg: Any, bucket: str, markers: bool = False) -> Entry | None:
    headers = msg.headers or {}
    status = headers.get("Status")
    if status is not None:
        if status == "404":
            return None
        raise StorageError(f"NATS direct get from {bucket}: {status} {headers.get('Description')}")
    key = headers["Nats-Subject"][len(bucket) + 5 :]
    if headers.get("KV-Operation") in ("DEL", "PURGE"):
        return Entry(key, int(headers["Nats-Sequence"]), b"", deleted=True) if markers else None
    return Entry(key, int(headers["Nats-Sequence"]), msg.data)
