"""File names and records of the file task queue (see :mod:`.queue` for the layout).

Pure functions, no I/O: every state a task can be in is readable from a directory listing, and
the fields that decide claim order and lease ownership live in the names, so a claim, a renewal
or a finish is one ``rename`` whose success is the compare-and-set.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import unquote

import msgspec

from omniq.backends.file.store import safe_name
from omniq.models import Task, TaskStatus

__all__ = [
    "DONE",
    "FINISHING",
    "KEYS",
    "PENDING",
    "RECORDS",
    "RUNNING",
    "WORKERS",
    "Finishing",
    "Pending",
    "Record",
    "Running",
    "decode_doc",
    "decode_key",
    "decode_record",
    "dt",
    "encode_doc",
    "encode_key",
    "encode_record",
    "finishing_name",
    "inverted",
    "parse_finishing",
    "parse_pending",
    "parse_running",
    "pending_name",
    "priority_of",
    "record_name",
    "running_name",
    "task_id_of",
    "us",
    "worker_hash",
]

PENDING = "queue/pending"
RUNNING = "queue/running"
FINISHING = "queue/finishing"
DONE = "queue/done"
KEYS = "queue/keys"
WORKERS = "queue/workers"
RECORDS = "queue/records"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_PRIO_BIAS = 1 << 63  # inverted priority: a higher priority sorts first, never negative
_STATUS_CODE = {TaskStatus.PENDING: "p", TaskStatus.RETRYING: "r"}
_CODE_STATUS = {code: status for status, code in _STATUS_CODE.items()}


class Record(msgspec.Struct, array_like=True):
    """A task file: the insertion sequence number (FIFO order) and the whole task."""

    seq: int
    task: Task


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)
_key_decoder = msgspec.msgpack.Decoder(tuple[str, int, str])
_doc_decoder = msgspec.msgpack.Decoder(tuple[str, int, bytes])


def encode_record(seq: int, task: Task) -> bytes:
    return _record_encoder.encode(Record(seq, task))


def decode_record(data: bytes) -> Record:
    """Raises ``msgspec.DecodeError`` (or ``ValidationError``) on a corrupt file."""
    return _record_decoder.decode(data)


def encode_key(task_id: str, created_us: int, queue_name: str) -> bytes:
    return _record_encoder.encode((task_id, created_us, queue_name))


def decode_key(data: bytes) -> tuple[str, int, str]:
    return _key_decoder.decode(data)


def encode_doc(key: str, version: int, data: bytes) -> bytes:
    """A record file (schedules, heartbeats): its key, version and data."""
    return _record_encoder.encode((key, version, data))


def decode_doc(data: bytes) -> tuple[str, int, bytes]:
    """Raises ``msgspec.DecodeError`` (or ``ValidationError``) on a corrupt file."""
    return _doc_decoder.decode(data)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def record_name(name: str) -> str:
    """A record's kind or key as one path segment that no other name maps to, even on a
    case-insensitive filesystem (worker ids hold host names): lower-case letters, digits, ``-``
    and ``_`` stay, every other UTF-8 byte becomes ``%XX`` (upper-case letters and ``.`` too);
    ``''`` is ``%``; past 150 characters, ``~`` and a digest (the file holds the key itself)."""
    encoded = "".join(
        c if c in _PLAIN else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in name
    )
    if len(encoded) > 150:
        return "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return encoded or "%"


def us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (naive datetimes are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


def dt(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def worker_hash(worker_id: str) -> str:
    return hashlib.sha256(worker_id.encode()).hexdigest()[:16]


def task_id_of(eid: str) -> str:
    """The task id from its encoded form in a file name."""
    return unquote(eid)


# --- pending/<queue>/<P>-<S>-<R>.<status><attempts>.<id> ------------------------------------------


class Pending(NamedTuple):
    prio: int  # inverted: smaller claims first
    seq: int
    run_us: int
    status: TaskStatus
    attempts: int
    eid: str
    name: str


def inverted(priority: int) -> int:
    """The priority as it sorts in names: smaller first, never negative."""
    return _PRIO_BIAS - max(-_PRIO_BIAS + 1, min(_PRIO_BIAS - 1, priority))


def priority_of(prio: int) -> int:
    return _PRIO_BIAS - prio


def pending_name(seq: int, task: Task) -> str:
    prio = inverted(task.priority)
    return (
        f"{prio:020d}-{seq:020d}-{max(0, us(task.run_at)):017d}"
        f".{_STATUS_CODE[task.status]}{task.attempts}.{safe_name(task.id)}"
    )


def parse_pending(name: str) -> Pending | None:
    try:
        head, state, eid = name.split(".")
        prio, seq, run = head.split("-")
        return Pending(
            int(prio), int(seq), int(run), _CODE_STATUS[state[0]], int(state[1:]), eid, name
        )
    except (ValueError, KeyError, IndexError):
        return None


# --- running/<id>.<S>.<attempts>.<lease until>.<started>.<worker hash> ---------------------------


class Running(NamedTuple):
    eid: str
    seq: int
    attempts: int
    lease_us: int
    started_us: int
    whash: str
    name: str


def running_name(
    eid: str, seq: int, attempts: int, lease_us: int, started_us: int, whash: str
) -> str:
    return f"{eid}.{seq}.{attempts}.{lease_us}.{started_us}.{whash}"


def parse_running(name: str) -> Running | None:
    try:
        eid, seq, attempts, lease, started, whash = name.split(".")
        return Running(eid, int(seq), int(attempts), int(lease), int(started), whash, name)
    except ValueError:
        return None


# --- finishing/<id>.<S>.<attempts>.<deadline> ----------------------------------------------------


class Finishing(NamedTuple):
    eid: str
    seq: int
    attempts: int
    deadline_us: int
    name: str


def finishing_name(eid: str, seq: int, attempts: int, deadline_us: int) -> str:
    return f"{eid}.{seq}.{attempts}.{deadline_us}"


def parse_finishing(name: str) -> Finishing | None:
    try:
        eid, seq, attempts, deadline = name.split(".")
        return Finishing(eid, int(seq), int(attempts), int(deadline), name)
    except ValueError:
        return None
