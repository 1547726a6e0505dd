"""Child processes for the process-pool worker: what runs in them, and the pool that owns them.

A child receives only bytes — the task's encoded call, its seal already checked and its function
already allowed by the parent — so the ``spawn`` start method works and nothing of the parent's
state is shared. It decodes the call with its own serializer (the key and ``allow_pickle`` of
the queue's serializer, which still check each pickle inside the call), runs it
(coroutines on the child's own event loop) and answers with the encoded value or the error. The
parent kills a child whose task outlived its timeout or was cancelled, and replaces any child
that dies; only that child's task fails.

Wire (MessagePack arrays over a pipe, one message each way per task):

- parent → child: ``[seq, task_id, attempt, queue_name, worker_id, call]`` runs a task;
  ``[seq]`` skips a task sent earlier that has not started; an empty message ends the child.
- child → parent: ``[seq, kind, data, next, seen]``: the outcome of task ``seq``, the task it
  starts now (``next``, None when it has none) and the last ``seq`` it had received by then.

With ``prefetch``, a child that runs a task may already hold the next ones in its pipe, so it
never waits for the parent between tasks. The answer's ``next`` and ``seen`` let the parent know
at every moment which task each child runs: tasks the child had not received when it ran out of
work start the moment they arrive (a child starts the first task it receives while idle without
looking further); tasks before ``next`` that it had received were skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from omniq.context import TaskContext, reset_current, set_current
from omniq.models import TaskError
from omniq.outcomes import unstorable

__all__ = ["ChildCrashed", "ChildPool"]

logger = logging.getLogger("omniq.worker")

_OK, _ERROR, _PERMANENT = "ok", "error", "permanent"
_STOP = b""
_PIPE_SLACK = 16 * 1024  # larger tasks go only to idle children: a busy one would not read them
_SHORT_TASK = 0.1  # seconds: below this mean run time, prefetching pays (see ChildPool)

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class ChildCrashed(Exception):
    """The child process running the task died (segfault, ``os._exit``, out of memory)."""


def _error_tuple(exc: BaseException) -> tuple[str, str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    error = TaskError.from_exception(exc, tb)  # its str() may raise: this one never does
    return error.type, error.message, tb


# --- the child -------------------------------------------------------------------------------


def child_main(
    conn: multiprocessing.connection.Connection,
    secret_key: str | bytes | None,
    allow_pickle: bool,
    where_defined: bool = False,
) -> None:
    """The loop of one child process (the target of ``spawn``); ``where_defined``: the
    worker has an allow-list (see ``Serializer.decode_call``)."""
    from omniq.serialization import Serializer

    serializer = Serializer(secret_key, allow_pickle=allow_pickle)
    decode_call = functools.partial(serializer.decode_call, where_defined=where_defined)
    loop = asyncio.new_event_loop()
    held: deque[list[Any]] = deque()  # tasks received and not started, in order
    seen = 0
    try:
        while True:
            if not held:
                # Idle: the first task that arrives starts at once (the parent counts on it).
                raw = conn.recv_bytes()
                if raw == _STOP:
                    return
                message = _decode(raw)
                if len(message) == 1:
                    continue  # a skip that came too late: that task ran already
                seen = message[0]
                held.append(message)
            seq, task_id, attempt, queue_name, worker_id, payload = held.popleft()
            kind, data = _run(
                serializer, decode_call, loop, payload, task_id, attempt, queue_name, worker_id
            )
            # Take in what arrived meanwhile, so that the answer can say which task runs next.
            stop = False
            while not stop and conn.poll():
                raw = conn.recv_bytes()
                stop = raw == _STOP
                if not stop:
                    seen = _take(_decode(raw), held, seen)
            nxt = held[0][0] if held and not stop else None
            conn.send_bytes(_encode((seq, kind, data, nxt, seen)))
            if stop:
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return


def _take(message: list[Any], held: deque[list[Any]], seen: int) -> int:
    """Queue a task, or drop the held task a skip names; the last task ``seq`` received."""
    if len(message) > 1:
        held.append(message)
        return int(message[0])
    for task in held:
        if task[0] == message[0]:
            held.remove(task)
            break
    return seen


def _run(
    serializer: Any,
    decode_call: Callable[[bytes], Any],
    loop: asyncio.AbstractEventLoop,
    payload: bytes,
    task_id: str,
    attempt: int,
    queue_name: str,
    worker_id: str,
) -> tuple[str, Any]:
    try:
        func, args, kwargs = decode_call(payload)
    except Exception as exc:  # unpickling runs user code
        return _PERMANENT, _error_tuple(exc)
    token = set_current(TaskContext(task_id, attempt, queue_name, worker_id))
    try:
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = loop.run_until_complete(_awaited(value))
    except BaseException as exc:  # sys.exit() too: the task's failure, the child goes on
        return _ERROR, _error_tuple(exc)
    finally:
        reset_current(token)
    try:
        return _OK, serializer.encode_value(value, what="task result")
    except Exception as exc:  # the same value would come back next time: no retry
        error = unstorable(value, exc)
        return _PERMANENT, (error.type, error.message, "")


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


# --- the parent's side -----------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    seq: int
    message: bytes
    future: asyncio.Future[tuple[str, Any]]
    may_wait: bool  # may wait in a busy child's pipe (it has no timeout to keep)
    child: _Child | None = None
    withdrawn: bool = False
    started: float = 0.0  # loop time it started (a queued one: when the task before it ended)
    on_start: Callable[[], None] | None = None  # called when a child starts it


@dataclass(eq=False)
class _Child:
    process: Any
    conn: multiprocessing.connection.Connection
    assigned: int = 0  # tasks sent to it, for max_tasks_per_child
    running: _Job | None = None  # the task it runs now
    queued: deque[_Job] = field(default_factory=deque)  # sent to it, not started, in order

    def start(self, job: _Job, now: float) -> None:
        """Record that it runs ``job`` from loop time ``now``."""
        self.running, job.started = job, now
        if job.on_start is not None:
            job.on_start()


class ChildPool:
    """``size`` spawned children; ``run`` hands one task to a child and awaits its answer.

    ``prefetch``: how many tasks may wait in the pipe of a busy child (tasks without a timeout
    only: a timeout starts when the task is handed over, so such a task goes to an idle child).
    ``short_tasks`` tells whether tasks run briefly enough (a mean under 100 ms) for that to pay:
    between two tasks a child would wait about a millisecond for the parent.
    """

    def __init__(
        self,
        size: int,
        *,
        secret_key: str | bytes | None,
        allow_pickle: bool,
        where_defined: bool = False,
        max_tasks_per_child: int | None = None,
        prefetch: int = 0,
    ) -> None:
        self._size = size
        self._child_args = (secret_key, allow_pickle, where_defined)
        self._max_tasks = max_tasks_per_child
        self._prefetch = prefetch
        self._context = multiprocessing.get_context("spawn")
        self._children: list[_Child] = []
        self._waiting: deque[_Job] = deque()  # tasks no child could take yet, in order
        self._replacing: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._mean_run = 0.0  # moving average of task run times (seconds)
        self._closed = False

    async def start(self) -> None:
        for _ in range(self._size):
            await self._spawn()

    @property
    def short_tasks(self) -> bool:
        """Whether recent tasks ran for less than 100 ms on average (True before any ran)."""
        return self._mean_run < _SHORT_TASK

    async def run(
        self,
        task: tuple[str, int, str, str, bytes],
        *,
        may_wait: bool,
        on_start: Callable[[], None] | None = None,
    ) -> tuple[str, Any]:
        """Run ``task`` (id, attempt, queue, worker id, payload); ``(kind, data)`` from the child.

        ``may_wait``: the task may wait behind another in a child's pipe (see ``prefetch``).
        ``on_start``: called when a child starts the task."""
        self._seq += 1
        message = _encode((self._seq, *task))
        future = asyncio.get_running_loop().create_future()
        may_wait = may_wait and len(message) <= _PIPE_SLACK
        job = _Job(self._seq, message, future, may_wait, on_start=on_start)
        self._waiting.append(job)
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            # A timeout or a cancel: stop the task wherever it is.
            self._withdraw(job)
            raise

    def _dispatch(self) -> None:
        """Hand waiting tasks, in order, to children that can take them."""
        while self._waiting:
            job = self._waiting[0]
            child = self._child_for(job)
            if child is None:
                return
            try:
                child.conn.send_bytes(job.message)
            except OSError:
                self._lose(child, kill=True)  # it died idle: the job waits for another child
                continue
            self._waiting.popleft()
            job.child = child
            child.assigned += 1
            if child.running is None:
                # An idle child starts what it receives at once.
                child.start(job, asyncio.get_running_loop().time())
            else:
                child.queued.append(job)

    def _child_for(self, job: _Job) -> _Child | None:
        """An idle child, else (where the job may wait) the busy child with the shortest queue."""
        best = None
        for child in self._children:
            if self._max_tasks is not None and child.assigned >= self._max_tasks:
                continue
            if child.running is None:
                return child
            if (
                job.may_wait
                and len(child.queued) < self._prefetch
                and (best is None or len(child.queued) < len(best.queued))
            ):
                best = child
        return best

    def _withdraw(self, job: _Job) -> None:
        job.withdrawn = True
        child = job.child
        if child is None:
            with contextlib.suppress(ValueError):
                self._waiting.remove(job)
        elif child.running is job:
            # Answers already in the pipe first: the child may have finished it and moved on.
            with contextlib.suppress(OSError, ValueError):
                while child in self._children and child.conn.poll():
                    self._take_answer(child)
            self._settle(child)
        elif job in child.queued:
            # Not started: the child skips it, or (too late) _settle stops it when it starts.
            with contextlib.suppress(OSError):
                child.conn.send_bytes(_encode((job.seq,)))

    def _on_readable(self, child: _Child) -> None:
        self._take_answer(child)
        self._settle(child)

    def _take_answer(self, child: _Child) -> None:
        """Take one answer from ``child``'s pipe, where there is one (or the end of it)."""
        try:
            seq, kind, data, nxt, seen = _decode(child.conn.recv_bytes())
        except (EOFError, OSError):
            self._lose(child, kill=False)
            return
        job, child.running, queued = child.running, None, child.queued
        now = asyncio.get_running_loop().time()
        if job is not None and job.seq == seq:
            self._mean_run += (now - job.started - self._mean_run) * 0.2
            if not job.future.done():
                job.future.set_result((kind, data))
        while queued and queued[0].seq <= seen and queued[0].seq != nxt:
            queued.popleft()  # withdrawn, and the child skipped it
        if queued:
            # It runs ``next`` now, or starts the first task it had not yet received.
            child.start(queued.popleft(), now)

    def _settle(self, child: _Child) -> None:
        """After answers: stop a withdrawn task that started, recycle, hand out tasks."""
        if child not in self._children:
            return
        if child.running is not None and child.running.withdrawn:
            self._lose(child, kill=True)
        elif (
            child.running is None
            and self._max_tasks is not None
            and child.assigned >= self._max_tasks
        ):
            self._lose(child, kill=False, graceful=True)
        else:
            self._dispatch()

    def _lose(self, child: _Child, *, kill: bool, graceful: bool = False) -> None:
        """Take ``child`` out of service: its running task fails (unless it was withdrawn), its
        queued tasks go to other children; a replacement is spawned."""
        if child not in self._children:
            return
        self._children.remove(child)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
        if kill:
            with contextlib.suppress(OSError, ValueError):
                child.process.kill()
        job, child.running = child.running, None
        if job is not None and not job.future.done():
            job.future.set_exception(ChildCrashed(_death(child)))
        for queued in reversed(child.queued):
            if not queued.withdrawn:
                queued.child = None
                self._waiting.appendleft(queued)
        child.queued.clear()
        replacing = asyncio.get_running_loop().create_task(self._replace(child, graceful))
        self._replacing.add(replacing)
        replacing.add_done_callback(self._replacing.discard)
        self._dispatch()

    async def _replace(self, child: _Child, graceful: bool) -> None:
        await _retire(child, graceful=graceful)
        if not self._closed:
            try:
                await self._spawn()
            except Exception:
                logger.exception("starting a child process failed")

    async def _spawn(self) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=child_main,
            args=(child_end, *self._child_args),
            name="omniq-child",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        child_end.close()
        child = _Child(process, parent_end)
        self._children.append(child)
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_readable, child)
        self._dispatch()

    async def close(self) -> None:
        """Stop every child (idle ones gracefully, busy ones killed)."""
        self._closed = True
        while self._replacing:
            await asyncio.gather(*self._replacing, return_exceptions=True)
        loop = asyncio.get_running_loop()
        children, self._children = self._children, []
        for child in children:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(child.conn.fileno())
        for child in children:
            await _retire(child, graceful=child.running is None)
            self._waiting.extend(([child.running] if child.running else []) + [*child.queued])
        for job in self._waiting:  # none once the worker has stopped: its tasks are done
            if not job.future.done():
                job.future.set_exception(ChildCrashed("the worker stopped"))
        self._waiting.clear()


async def _retire(child: _Child, *, graceful: bool) -> None:
    if graceful:
        with contextlib.suppress(OSError):
            child.conn.send_bytes(_STOP)
        await asyncio.to_thread(child.process.join, 5)
    if child.process.is_alive():
        child.process.kill()
        await asyncio.to_thread(child.process.join, 5)
    child.conn.close()


def _death(child: _Child) -> str:
    child.process.join(1)
    code = child.process.exitcode
    if code is not None and code < 0:
        return f"the child process running the task was killed by signal {-code}"
    return f"the child process running the task exited unexpectedly (exit code {code})"


def error_from(data: tuple[str, str, str]) -> TaskError:
    kind, message, tb = data
    return TaskError(type=kind, message=message, traceback=tb)
