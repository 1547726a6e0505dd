"""Names of buckets, keys, subjects and consumers (the layout is documented in the package)."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from typing import Any

from omniq.errors import ConfigError

__all__ = [
    "BAND_LIMIT",
    "KEYS_BUCKET",
    "QUEUES_BUCKET",
    "RECORDS_BUCKET",
    "RESULTS_BUCKET",
    "TASKS_BUCKET",
    "band",
    "bucket_config",
    "bucket_stream",
    "consumer_name",
    "kv_subject",
    "record_key",
    "record_token",
    "servers_list",
    "task_key",
    "token",
    "wake_subject",
]

TASKS_BUCKET = "omniq_tasks"
KEYS_BUCKET = "omniq_keys"
QUEUES_BUCKET = "omniq_queues"
RESULTS_BUCKET = "omniq_results"
RECORDS_BUCKET = "omniq_records"
BAND_LIMIT = 10  # priorities beyond ±10 share the outermost band (FIFO among themselves)
DUPLICATE_WINDOW_NS = 120 * 1_000_000_000

_LONG_TOKEN = 200  # longer record tokens are hashed (subjects must stay short)
_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
_ALL_SAFE = re.compile(r"[A-Za-z0-9_-]*").fullmatch


def token(name: str) -> str:
    """``name`` as one subject/key token: letters, digits, ``-`` and ``_`` stay, every other
    character becomes ``=XX`` per UTF-8 byte (so distinct names never share a token)."""
    if _ALL_SAFE(name):
        return name
    return "".join(c if c in _SAFE else "".join(f"={b:02X}" for b in c.encode()) for c in name)


def band(priority: int) -> int:
    """The priority band of a priority."""
    return max(-BAND_LIMIT, min(BAND_LIMIT, priority))


def task_key(project_token: str, task_id: str, queue_name: str, priority: int) -> str:
    return f"{project_token}.{token(task_id)}.{token(queue_name)}.p{band(priority)}"


def record_token(name: str) -> str:
    """A record's kind or key as one key token: :func:`token`, or for an empty or long name
    ``==`` and its SHA-256 (``token`` never writes ``==``, so the two never meet)."""
    escaped = token(name)
    if escaped and len(escaped) <= _LONG_TOKEN:
        return escaped
    return "==" + hashlib.sha256(name.encode()).hexdigest()


def record_key(project_token: str, kind: str, key: str) -> str:
    return f"{project_token}.{record_token(kind)}.{record_token(key)}"


def bucket_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def wake_subject(project_token: str) -> str:
    return f"omniq.wake.{project_token}"


def consumer_name(project_token: str, queue_token: str, band_no: int) -> str:
    digest = hashlib.sha1(f"{project_token}.{queue_token}.{band_no}".encode()).hexdigest()
    return f"omniq-{digest[:24]}"


def bucket_config(
    bucket: str, *, replicas: int, max_age_s: float | None = None, description: str = ""
) -> dict[str, Any]:
    """A key-value bucket's stream (history 1, file storage: it survives a server restart)."""
    return {
        "name": bucket_stream(bucket),
        "description": description,
        "subjects": [f"$KV.{bucket}.>"],
        "retention": "limits",
        "storage": "file",
        "discard": "new",
        "max_msgs_per_subject": 1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": int((max_age_s or 0) * 1_000_000_000),
        "max_msg_size": -1,
        "max_consumers": -1,
        "num_replicas": replicas,
        "duplicate_window": min(DUPLICATE_WINDOW_NS, int((max_age_s or 1e9) * 1_000_000_000)),
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "deny_purge": False,
        "allow_direct": True,
        "allow_msg_ttl": True,
    }


def servers_list(servers: str | Sequence[str] | None) -> list[str]:
    if servers is None:
        return ["nats://127.0.0.1:4222"]
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",")]
    found = [s for s in servers if s]
    if not found:
        raise ConfigError(f"servers: give at least one nats:// URL, got {servers!r}")
    return found
