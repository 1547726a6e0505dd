"""Records (schedules, worker heartbeats: see ``AsyncTaskQueue.get_record``) in the key-value
bucket ``omniq_records``.

A record is the key ``<p>.<kind>.<key>`` (kind and key escaped by
:func:`.layout.record_token`) whose value is msgpack ``(version, key, data)``. The
contract's version (1, 2, 3, ... per record) travels inside the value, since the key's revision is
a stream sequence shared by every key of the bucket; the key travels too, so a listing never has
to undo the escaping (a hashed token cannot be undone).

Atomicity: every write is a compare-and-set on the key's revision read just before it
(``Nats-Expected-Last-Subject-Sequence``: the live value's revision, a delete marker's revision,
or 0 when the key never existed or its marker expired). It is stored only if nothing was written
to the key in between, so the version it replaces is the version that was read. A conflict means
another writer got there first: a put or a delete reads again and retries (someone made progress,
so this ends); a swap reads again and gives up unless the version is still the one it expects.
A delete writes a purge marker that expires after ``MARKER_TTL`` (history 1: nothing else stays).
"""

from __future__ import annotations

import msgspec

from omniq.backends.nats.client import CasConflict, Client, Write
from omniq.backends.nats.keys import MARKER_TTL
from omniq.backends.nats.layout import RECORDS_BUCKET, record_key, record_token

__all__ = ["delete", "delete_write", "get", "list_kind", "put_write", "write"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[int, str, bytes]).decode


async def get(client: Client, project_token: str, kind: str, key: str) -> tuple[int, bytes] | None:
    """The record's ``(version, data)``, or None."""
    entry = await client.kv_get(RECORDS_BUCKET, record_key(project_token, kind, key))
    if entry is None:
        return None
    version, _, data = _decode(entry.value)
    return version, data


async def list_kind(
    client: Client, project_token: str, kind: str, *, by_key: bool = True
) -> list[tuple[str, int, bytes]]:
    """Every record of ``kind`` as ``(key, version, data)``, ordered by key (with ``by_key``
    False: in the order they were last written, as the scan delivers them)."""
    pattern = f"{project_token}.{record_token(kind)}.*"
    entries = await client.kv_scan(RECORDS_BUCKET, pattern)
    found = [(key, version, data) for version, key, data in (_decode(e.value) for e in entries)]
    if by_key:
        found.sort(key=lambda record: record[0])
    return found


async def write(
    client: Client, project_token: str, kind: str, key: str, data: bytes, expected: int | None
) -> int | None:
    """Store ``data`` with the next version if the stored version is ``expected`` (0: absent;
    None: whatever it is); returns the new version, or None when it is not."""
    name = record_key(project_token, kind, key)
    while True:
        entry = await client.kv_get(RECORDS_BUCKET, name, markers=True)
        revision = 0 if entry is None else entry.revision
        version = 0 if entry is None or entry.deleted else _decode(entry.value)[0]
        if expected is not None and version != expected:
            return None
        value = _encode((version + 1, key, data))
        try:
            await client.kv_write(RECORDS_BUCKET, name, value, last=revision)
        except CasConflict:
            continue  # written meanwhile: look again
        return version + 1


async def delete(client: Client, project_token: str, kind: str, key: str) -> bool:
    """Delete the record; True if there was one."""
    name = record_key(project_token, kind, key)
    while True:
        entry = await client.kv_get(RECORDS_BUCKET, name)
        if entry is None:
            return False
        try:
            await client.kv_write(
                RECORDS_BUCKET, name, b"", last=entry.revision, purge=True, ttl=MARKER_TTL
            )
        except CasConflict:
            continue  # written (or deleted) meanwhile: look again
        return True


def put_write(project_token: str, kind: str, key: str, data: bytes) -> Write:
    """An unconditional write of a record at version 1, to send in a batch: only for records
    written once and never swapped (entries of the waiting index)."""
    return Write(record_key(project_token, kind, key), _encode((1, key, data)))


def delete_write(project_token: str, kind: str, key: str, marker_ttl: str = MARKER_TTL) -> Write:
    """An unconditional delete of a record (a purge marker that expires after ``marker_ttl``),
    to send in a batch: only for records nobody swaps (entries of the waiting index)."""
    return Write(record_key(project_token, kind, key), b"", ttl=marker_ttl, purge=True)
