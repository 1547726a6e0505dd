"""The Redis key layout of OmniQ: every key and channel one project uses, in one place.

Every name starts with ``omniq:{<project>}:`` (``%``, ``{`` and ``}`` in the project name
percent-encoded, so distinct projects never share a key). The braces are a Redis Cluster hash
tag: all of a project's keys hash to one slot, so each Lua script touches keys of a single slot
(cluster-safe) and one project's data never spreads across shards. Scripts get the prefix as
``ARGV[1]`` and one key of the project as ``KEYS[1]`` (which routes the call in a cluster); the
names they build from the prefix are the ones below, and each ``.lua`` file lists those it
touches.

Tasks (``omniq.backends.redis.queue``):

=========================  ======  ==========================================================
key (after the prefix)     type    contents
=========================  ======  ==========================================================
``t:<task id>``            hash    one task; fields in :data:`TASK_FIELDS` (below)
``seq``                    string  INCR counter: each stored task's insertion number
``queues``                 set     every queue name ever used (list/count/purge iterate it)
``ready:<queue>``          zset    tasks due now: score ``-priority``, member
                                   ``<seq as 16 hex digits>:<task id>`` (equal scores sort by
                                   member, so FIFO among equal priorities)
``delayed``                zset    PENDING/RETRYING tasks not due yet: score ``run_at``, member
                                   the task id; the claim script moves due ones to ``ready:``
``leases``                 zset    RUNNING tasks: score ``lease_until``, member the task id; the
                                   claim script moves lapsed ones back to ``ready:``
``idx:<status>:<queue>``   zset    every task by status and queue: score ``seq``, member the id
                                   (list in insertion order, count with ZCARD, no SCAN)
``key:<idempotency key>``  string  id of the live task holding that key; set by the insert
                                   script, deleted when that task becomes final or is purged
=========================  ======  ==========================================================

Channel ``wake`` (pub/sub): the names of queues that got a claimable task (newline-separated),
published by the insert, finish and transition scripts; idle workers wait on it.

Records (the queue's: schedules, worker heartbeats; see ``AsyncTaskQueue.get_record``):

=========================  ======  ==========================================================
``rec:<kind>``             hash    one field per record of that kind: field the record's key
                                   (any string), value ``<version>:<data>`` (decimal version,
                                   then the record's bytes). Reads are single commands (HGET,
                                   HGETALL: one consistent snapshot), deletes HDEL; writes go
                                   through the ``put_record`` script, which reads the version
                                   and writes the next one in one atomic step (compare-and-set)
=========================  ======  ==========================================================

Results (``omniq.backends.redis.storage``):

=========================  ======  ==========================================================
``r:<task id>``            string  the encoded :class:`~omniq.models.TaskResult`, written with
                                   ``PX`` = time left until its ``expires_at`` (Redis deletes it)
=========================  ======  ==========================================================

Channel ``results`` (pub/sub): the ids of results just written (space-separated), published by
the put script; ``get(wait=True)`` waits on it.

A task hash holds its mutable state in short fields that the scripts read and write, and its
immutable rest in one msgpack blob ``d`` that only Python reads. Absent values (None) are absent
fields. Times are seconds since the Unix epoch written with Python's ``repr(float)`` (scripts pass
them through as strings, so no precision is lost).
"""

from __future__ import annotations

__all__ = [
    "RESULTS_CHANNEL",
    "TASK_FIELDS",
    "WAKE_CHANNEL",
    "prefix",
    "record_key",
    "result_key",
    "task_key",
]

#: Hash fields of ``t:<id>``, in the order scripts return them (see ``_lib.lua``'s ``FIELDS``).
TASK_FIELDS = (
    b"s",  # status (TaskStatus value)
    b"q",  # queue name
    b"p",  # priority (integer)
    b"r",  # run_at
    b"e",  # expires_at
    b"l",  # lease_until
    b"w",  # worker_id
    b"a",  # attempts (integer)
    b"b",  # started_at ("begun")
    b"f",  # finished_at
    b"x",  # error: TaskError as JSON
    b"k",  # idempotency key
    b"n",  # seq: insertion number (FIFO order, listing order)
    b"d",  # the immutable rest as msgpack (see omniq.backends.redis.codec.Fixed)
)

# Without a '}' in it, the project ends at the first '}', so no project's prefix begins another
# project's key, and the hash tag (the text between the first '{' and '}') is the whole project.
# Inside a project every key starts with a fixed word, and only its last part is free text.
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})

WAKE_CHANNEL = "wake"
RESULTS_CHANNEL = "results"


def prefix(project: str) -> str:
    """``omniq:{<project>}:``: the start of every key of the project (with its hash tag), the
    project's ``%``, ``{`` and ``}`` percent-encoded."""
    return f"omniq:{{{project.translate(_ESCAPES)}}}:"


def task_key(project_prefix: str, task_id: str) -> str:
    return f"{project_prefix}t:{task_id}"


def result_key(project_prefix: str, task_id: str) -> str:
    return f"{project_prefix}r:{task_id}"


def record_key(project_prefix: str, kind: str) -> str:
    return f"{project_prefix}rec:{kind}"
