"""NATS JetStream internals shared by the NATS task queue and result storage.

Layout (every name below is shared by all projects on a server; a project's entries sit under its
token ``<p>``, the project name escaped by :func:`token`):

========================  =========================================================================
``KV omniq_tasks``        The task table, one key per task: ``<p>.<id>.<q>.p<band>`` (``<q>``: the
                          named queue, escaped; ``<band>``: the priority clamped to ±10). The value
                          is the msgpack :class:`~omniq.models.Task`; the key's revision (its stream
                          sequence) is the compare-and-set token of every update. History 1: each
                          write replaces the previous message of the key.
durable pull consumers    ``omniq-<hash of p, q, band>`` on the bucket's stream ``KV_omniq_tasks``,
                          filter ``$KV.omniq_tasks.<p>.*.<q>.p<band>``: one per named queue and
                          priority band, shared by every worker. They deliver each task's latest
                          message; that message is the task's delivery token (see below).
``KV omniq_keys``         Idempotency keys: ``<p>.<key>`` -> (task key, encoded task) of the task
                          holding it (see :mod:`.keys`).
``KV omniq_queues``       The (queue, band) pairs a project has used: ``<p>.<q>.p<band>`` -> JSON.
``KV omniq_results``      Results: ``<p>.<id>`` -> the encoded :class:`~omniq.models.TaskResult`;
                          a per-message TTL (``Nats-TTL``) from ``expires_at``, the bucket's
                          ``max_age`` from ``Settings.RESULT_TTL``.
``KV omniq_records``      Records (schedules, worker heartbeats): ``<p>.<kind>.<key>`` (escaped;
                          hashed when empty or long) -> msgpack ``(version, key, data)``; the
                          contract's version lives in the value, every write is a compare-and-set
                          on the key's revision (see :mod:`.records`). Also the
                          index of WAITING tasks: kind ``omniq-waiting``, one entry per task,
                          and ``omniq-index/waiting`` (see :mod:`.waiting`).
``omniq.wake.<p>``        Core NATS (no storage): "a task may be due in (queue, band) at time t",
                          sent after writes that make a task claimable: tells idle workers of
                          bands they do not long-poll yet (see :mod:`.pairs`).
========================  =========================================================================

Why the task table is also the work queue: every write of a task key is one new message on the
bucket's stream and removes the older one (history 1), so each task has exactly one live message,
always its current state, and a crash between two writes cannot leave a task without a delivery
token or with two. A claimer pulls messages in band order and acts on the state they carry:

- PENDING/RETRYING and due: compare-and-set to RUNNING (``Nats-Expected-Last-Subject-Sequence`` =
  the message's sequence). Win or lose, a newer message of the key now exists, and the server
  drops the replaced one from the consumer's pending list itself: no ack is needed.
- not yet due: ``nak`` with ``delay = run_at - now`` (JetStream redelivers it then).
- RUNNING with a live lease: ``nak`` with ``delay = lease_until - now``: the nak delay *is* the
  lease; when it lapses without a renewal (which writes a new message) the message comes back
  and the next claimer takes the task over (attempts + 1).
- final, deleted or purged: ack and drop.

The consumers' ``AckWait`` (``ack_wait``, default ``Settings.LEASE_TIMEOUT``) only bounds how long
a message stays invisible when its claimer dies between pulling and answering it.

Clocks: due times and leases are compared with the claimer's clock (``run_at``, ``lease_until``
are wall-clock times written by other hosts): keep hosts NTP-synchronised.

Modules: :mod:`.client` (connection, requests, pulls), :mod:`.kv`
(key-value calls), :mod:`.keys` (task records, idempotency keys),
:mod:`.records` (versioned records), :mod:`.waiting` (the index of
WAITING tasks),
:mod:`.pairs` (bands, long-polls, wake-ups), :mod:`.layout` (names).
"""

from __future__ import annotations

from typing import Any

from omniq.backends.nats.client import Client, acquire
from omniq.backends.nats.kv import CasConflict, Entry
from omniq.backends.nats.layout import (
    KEYS_BUCKET,
    QUEUES_BUCKET,
    RECORDS_BUCKET,
    RESULTS_BUCKET,
    TASKS_BUCKET,
    band,
    bucket_stream,
    token,
)
from omniq.registry import builtin_entry

__all__ = [
    "ENTRY",
    "KEYS_BUCKET",
    "QUEUES_BUCKET",
    "RECORDS_BUCKET",
    "RESULTS_BUCKET",
    "TASKS_BUCKET",
    "CasConflict",
    "Client",
    "Entry",
    "acquire",
    "band",
    "bucket_stream",
    "token",
]


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    """``nats://a:4222,nats://b:4222``: the servers of one cluster."""
    return "nats", {"servers": [part.strip() for part in url.split(",") if part.strip()]}


ENTRY = builtin_entry(
    "nats", "NATS", events=False, extra="nats", schemes=("nats", "tls"), url_options=_url_options
)
