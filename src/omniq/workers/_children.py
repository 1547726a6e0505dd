"""Child processes for the process-pool worker: what runs in them, and the pool that owns them.

A child receives only bytes — the task's encoded payload — so the ``spawn`` start method works
and nothing of the parent's state is shared. It decodes the call with its own serializer, runs it
(coroutines on the child's own event loop) and answers with the encoded value or the error. The
parent kills a child whose task outlived its timeout or was cancelled, and replaces any child
that dies; only that child's task fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import traceback
from dataclasses import dataclass, field
from typing import Any

from omniq.context import TaskContext, reset_current, set_current
from omniq.models import TaskError

__all__ = ["ChildCrashed", "ChildPool"]

logger = logging.getLogger("omniq.worker")

_OK, _ERROR, _PERMANENT = "ok", "error", "permanent"


class ChildCrashed(Exception):
    """The child process running the task died (segfault, ``os._exit``, out of memory)."""


def _error_tuple(exc: BaseException) -> tuple[str, str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__qualname__, str(exc), tb


def child_main(
    conn: multiprocessing.connection.Connection, secret_key: str | None, allow_pickle: bool
) -> None:
    """The loop of one child process (the target of ``spawn``)."""
    from omniq.serialization import Serializer

    serializer = Serializer(secret_key, allow_pickle=allow_pickle)
    loop = asyncio.new_event_loop()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        task_id, attempt, queue_name, worker_id, payload = message
        try:
            func, args, kwargs = serializer.decode_call(payload)
        except Exception as exc:  # unpickling runs user code
            conn.send((_PERMANENT, _error_tuple(exc)))
            continue
        token = set_current(TaskContext(task_id, attempt, queue_name, worker_id))
        try:
            value = func(*args, **kwargs)
            if inspect.isawaitable(value):
                value = loop.run_until_complete(_awaited(value))
            answer = (_OK, serializer.encode_value(value, what="task result"))
        except Exception as exc:
            answer = (_ERROR, _error_tuple(exc))
        finally:
            reset_current(token)
        conn.send(answer)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


@dataclass(eq=False)
class _Child:
    process: Any
    conn: multiprocessing.connection.Connection
    done: int = 0
    pending: asyncio.Future[Any] | None = field(default=None)


class ChildPool:
    """``size`` spawned children; ``run`` sends one payload to an idle child and awaits it."""

    def __init__(
        self,
        size: int,
        *,
        secret_key: str | None,
        allow_pickle: bool,
        max_tasks_per_child: int | None = None,
    ) -> None:
        self._size = size
        self._secret_key, self._allow_pickle = secret_key, allow_pickle
        self._max_tasks = max_tasks_per_child
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._closed = False

    async def start(self) -> None:
        for _ in range(self._size):
            self._idle.put_nowait(await self._spawn())

    async def _spawn(self) -> _Child:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=child_main,
            args=(child_end, self._secret_key, self._allow_pickle),
            name="omniq-child",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        child_end.close()
        child = _Child(process, parent_end)
        self._children.add(child)
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_readable, child)
        return child

    async def run(self, message: tuple[Any, ...]) -> tuple[str, Any]:
        """Send ``message`` to an idle child; returns ``(kind, data)`` from the child."""
        child = await self._idle.get()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        child.pending = future
        try:
            child.conn.send(message)
            answer = await future
        except BaseException:
            # Timeout, cancellation or a dead child: this child's state is unknown; replace it.
            await self._replace(child)
            raise
        child.pending = None
        child.done += 1
        if self._max_tasks is not None and child.done >= self._max_tasks:
            await self._replace(child, graceful=True)
        else:
            self._idle.put_nowait(child)
        return answer

    def _on_readable(self, child: _Child) -> None:
        try:
            answer = child.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
            if child.pending is not None and not child.pending.done():
                child.pending.set_exception(ChildCrashed(_death(child)))
            return
        if child.pending is not None and not child.pending.done():
            child.pending.set_result(answer)

    async def _replace(self, child: _Child, *, graceful: bool = False) -> None:
        await self._retire(child, graceful=graceful)
        if not self._closed:
            self._idle.put_nowait(await self._spawn())

    async def _retire(self, child: _Child, *, graceful: bool) -> None:
        self._children.discard(child)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
        if graceful:
            with contextlib.suppress(OSError):
                child.conn.send(None)
            await asyncio.to_thread(child.process.join, 5)
        if child.process.is_alive():
            child.process.kill()
            await asyncio.to_thread(child.process.join, 5)
        child.conn.close()

    async def close(self) -> None:
        """Stop every child (idle ones gracefully, busy ones killed)."""
        self._closed = True
        for child in list(self._children):
            await self._retire(child, graceful=child.pending is None)


def _death(child: _Child) -> str:
    child.process.join(1)
    code = child.process.exitcode
    if code is not None and code < 0:
        return f"the child process running the task was killed by signal {-code}"
    return f"the child process running the task exited unexpectedly (exit code {code})"


def error_from(data: tuple[str, str, str]) -> TaskError:
    kind, message, tb = data
    return TaskError(type=kind, message=message, traceback=tb)
