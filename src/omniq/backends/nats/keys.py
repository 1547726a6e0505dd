"""Task records and idempotency keys in the key-value buckets.

An idempotency key is the entry ``<p>.<key>`` of ``omniq_keys``: msgpack ``(task key, encoded
task, time taken)``. It is taken with a compare-and-set, so concurrent enqueues of one key agree
on one task. It carries the task itself, so an enqueue that died between taking the key and
storing the task is completed by the next enqueue of that key within two minutes (instead of the
key pointing nowhere). A key whose task is final (or gone) is free.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec

from omniq._corrupt import CorruptField, check, named, stand_in
from omniq.backends.nats.client import CasConflict, Client, Entry, Write
from omniq.backends.nats.layout import KEYS_BUCKET, TASKS_BUCKET, task_key, token
from omniq.errors import StorageError
from omniq.models import Task, TaskStatus

__all__ = [
    "MARKER_TTL",
    "create_write",
    "decode_status",
    "decode_task",
    "drop_key",
    "encode_task",
    "insert_keyed",
    "retake_key",
]

MARKER_TTL = "300s"  # purge markers vanish after this (consumers skip them meanwhile)
# A key whose task was never stored is completed only this soon after it was taken: later, its
# task is more likely purged (its marker gone) than half-enqueued, and the key is simply free.
_COMPLETE_WITHIN_S = 120.0

encode_task = msgspec.msgpack.Encoder().encode
_decode_task = msgspec.msgpack.Decoder(Task).decode


class _Status(msgspec.Struct):
    status: TaskStatus


_decode_status = msgspec.msgpack.Decoder(_Status).decode
_decode_key_entry = msgspec.msgpack.Decoder(tuple[str, bytes, float]).decode
_UNREADABLE = (msgspec.DecodeError, CorruptField)


def decode_task(data: bytes, key: str = "") -> Task:
    """A stored task. One that cannot be read (written from outside) becomes a stand-in
    (:mod:`omniq._corrupt`) made of what can be read of it and of its ``key``
    (``<project>.<id>.<queue>.p<band>``), so that it fails alone."""
    try:
        return check(_decode_task(data))
    except _UNREADABLE as exc:
        return _stand_in(data, key, named(exc))


def decode_status(data: bytes) -> TaskStatus:
    """Only the status of an encoded task (counting skips the rest); FAILED for a task that
    cannot be read, as :func:`decode_task` reads it."""
    try:
        return _decode_status(data).status
    except msgspec.DecodeError:
        return decode_task(data).status


def _stand_in(data: bytes, key: str, why: Exception) -> Task:
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        raw = None
    raw = raw if isinstance(raw, dict) else {}
    parts = key.split(".")
    known: dict[str, Any] = {}
    for name, kind in (("func_name", str), ("queue_name", str), ("key", str), ("worker_id", str)):
        if type(raw.get(name)) is kind:
            known[name] = raw[name]
    for name in ("priority", "attempts"):
        if type(raw.get(name)) is int and raw[name] >= (0 if name == "attempts" else -(2**63)):
            known[name] = raw[name]
    if raw.get("status") in TaskStatus._value2member_map_:
        known["status"] = TaskStatus(raw["status"])
    if len(parts) == 4:
        known.setdefault("queue_name", parts[2])
        if parts[3][1:].lstrip("-").isdigit():  # the band: the priority, unless beyond it
            known.setdefault("priority", int(parts[3][1:]))
    task_id = raw["id"] if type(raw.get("id")) is str else parts[1] if len(parts) == 4 else "?"
    return stand_in(task_id, why, **known)


def create_write(project_token: str, task: Task) -> Write:
    """The write that stores a new task (fails if the key exists)."""
    key = task_key(project_token, task.id, task.queue_name, task.priority)
    # Nats-Msg-Id: a create sent again (after a lost reply) is dropped as a duplicate.
    return Write(key, encode_task(task), last=0, msg_id=f"{project_token}.{task.id}")


async def create(client: Client, project_token: str, task: Task) -> None:
    (outcome,) = await client.kv_write_many(TASKS_BUCKET, [create_write(project_token, task)])
    if isinstance(outcome, StorageError) and not isinstance(outcome, CasConflict):
        raise outcome  # a conflict: stored already (a re-sent create, a concurrent keyed one)


async def insert_keyed(client: Client, project_token: str, task: Task) -> str:
    """Store a task with an idempotency key; returns the id of the live task holding the key
    (``task``'s own id when it was free)."""
    assert task.key is not None
    name = f"{project_token}.{token(task.key)}"
    key = task_key(project_token, task.id, task.queue_name, task.priority)
    while True:
        entry = await client.kv_get(KEYS_BUCKET, name, markers=True)
        if entry is not None and not entry.deleted:
            holder = await _holder(client, entry)
            if holder is not None and not holder.status.is_final:
                return holder.id
        value = encode_task((key, encode_task(task), time.time()))
        try:
            await client.kv_write(KEYS_BUCKET, name, value, last=entry.revision if entry else 0)
        except CasConflict:
            continue  # another enqueue took the key meanwhile: look again
        await create(client, project_token, task)
        return task.id


async def retake_key(client: Client, project_token: str, key: str, task: Task) -> None:
    """Point a task's idempotency key back at it (requeue), unless another live task holds it."""
    assert task.key is not None
    name = f"{project_token}.{token(task.key)}"
    while True:
        entry = await client.kv_get(KEYS_BUCKET, name, markers=True)
        if entry is not None and not entry.deleted:
            holder = await _holder(client, entry)
            if holder is not None and holder.id == task.id:
                return
            if holder is not None and not holder.status.is_final:
                raise StorageError(
                    f"task {task.id}: another live task ({holder.id}) holds its idempotency "
                    f"key {task.key!r}, so it cannot be made live again"
                )
        value = encode_task((key, encode_task(task), time.time()))
        try:
            await client.kv_write(KEYS_BUCKET, name, value, last=entry.revision if entry else 0)
            return
        except CasConflict:
            continue


async def drop_key(client: Client, project_token: str, key_name: str, key: str) -> None:
    """Free an idempotency key if it still points at the task key ``key`` (purge)."""
    name = f"{project_token}.{token(key_name)}"
    entry = await client.kv_get(KEYS_BUCKET, name)
    if entry is not None and _decode_key_entry(entry.value)[0] == key:
        with contextlib.suppress(CasConflict):  # a conflict: taken by a new task meanwhile
            await client.kv_write(
                KEYS_BUCKET, name, b"", last=entry.revision, purge=True, ttl=MARKER_TTL
            )


async def _holder(client: Client, entry: Entry) -> Task | None:
    """The task a key points to; stored first if its enqueue died half-way (not if it was purged:
    its purge marker makes the create fail, and outlives ``_COMPLETE_WITHIN_S``)."""
    key, encoded, taken_at = _decode_key_entry(entry.value)
    found = await client.kv_get(TASKS_BUCKET, key)
    if found is None and time.time() - taken_at < _COMPLETE_WITHIN_S:
        with contextlib.suppress(CasConflict):
            await client.kv_write(TASKS_BUCKET, key, encoded, last=0)
        found = await client.kv_get(TASKS_BUCKET, key)
    return None if found is None else decode_task(found.value, found.key)
