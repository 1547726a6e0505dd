"""Sync twins of async classes, from one mechanism.

Each process has one :class:`LoopThread`: an event loop in a daemon thread. A sync twin creates
its async object on that loop and sends every call there with ``run_coroutine_threadsafe`` (one
thread hop per call). The sync classes are real classes that ``scripts/generate_sync_twins.py``
writes from the async ones (methods, signatures, docstrings; never re-typed by hand), so type
checkers see them. After ``fork`` the child gets a fresh loop thread and each twin re-creates
its async object from the arguments it was built with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import os
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from omniq.errors import LoopThreadError

__all__ = ["AsyncProxy", "LoopThread", "SyncTwin", "as_async", "portal", "twin_of"]

T = TypeVar("T")
A = TypeVar("A")


class LoopThread:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str = "omniq-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    self._start()
                loop = self._loop
        assert loop is not None
        return loop

    def _start(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)  # only in this private thread
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=serve, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop and wait for its result."""
        if self.in_loop_thread():
            coro.close()
            raise LoopThreadError(
                "a sync OmniQ method was called from OmniQ's event-loop thread "
                "(inside an async task?): use the Async* class and await it instead"
            )
        call = _Call(coro)
        loop = self.loop
        loop.call_soon_threadsafe(call.start, loop)
        return call.result(loop)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a plain function on the loop thread (so it binds to that loop); return its result."""
        if self.in_loop_thread():
            return func(*args, **kwargs)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                done.set_result(func(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return done.result()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None


class _Call(Generic[T]):
    """One coroutine sent to the loop thread and waited for by the calling thread.

    Lighter than ``run_coroutine_threadsafe`` (which chains a ``concurrent.futures.Future`` to
    the task through two callbacks and a condition variable): the caller blocks on a plain
    lock that the task's done callback releases, the only cross-thread step on the way back.
    """

    __slots__ = ("_coro", "_done", "_task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._task: asyncio.Task[T] | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop thread: run the coroutine as a task."""
        try:
            self._task = loop.create_task(self._coro)
        except BaseException:
            self._done.release()
            raise
        self._task.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[T]) -> None:
        self._done.release()

    def result(self, loop: asyncio.AbstractEventLoop) -> T:
        """In the calling thread: wait for the task; interrupted, cancel it and re-raise."""
        try:
            self._done.acquire()
        except BaseException:
            loop.call_soon_threadsafe(self._cancel)
            raise
        if self._task is None:
            raise LoopThreadError("the call could not be started on OmniQ's event loop")
        return self._task.result()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        else:
            self._coro.close()


_portal = LoopThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_portal.reset_after_fork)


def portal() -> LoopThread:
    """The process-wide loop thread that serves every sync twin."""
    return _portal


_TWINS: dict[type, type[SyncTwin[Any]]] = {}
_SEARCHED: set[type] = set()  # classes whose package's twins were imported already


class SyncTwin(Generic[A]):
    """Base of the sync classes, which ``scripts/generate_sync_twins.py`` writes from their async
    twins: ``class X(SyncTwin[AsyncX], twin=AsyncX)`` with one blocking method per async one, each
    sending its call to the loop thread through :meth:`_run`. A contract's members are generated
    once, in a generic base twin (``TaskQueueTwin[A]``, without ``twin=``) that the twins of its
    implementations subclass."""

    _async_class: ClassVar[type[Any]]
    _async: A
    _factory: Callable[[], A]
    _pid: int

    def __init_subclass__(cls, twin: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if twin is not None:
            cls._async_class = twin
            _TWINS[twin] = cls

    def _construct(self, factory: Callable[[], A]) -> None:
        """Create the async object on the loop thread (and again in a forked child)."""
        self._factory = factory
        self._pid = os.getpid()
        self._async = _portal.call(factory)

    def _target(self) -> A:
        """The async object, re-created in a child process after fork."""
        if self._pid != os.getpid():
            self._async = _portal.call(self._factory)
            self._pid = os.getpid()
        return self._async

    @staticmethod
    def _run(coro: Coroutine[Any, Any, T]) -> T:
        return _portal.run(coro)

    @classmethod
    def _build(cls, factory: Callable[[], Any]) -> Self:
        """A classmethod's result: its async object wrapped in this twin, anything else as is."""
        result = _portal.call(factory)
        if isinstance(result, cls._async_class):
            return cls._wrap(result, factory)
        return result  # type: ignore[no-any-return]

    @classmethod
    def _wrap(cls, async_obj: Any, factory: Callable[[], Any]) -> Self:
        self = cls.__new__(cls)
        self._async, self._factory, self._pid = async_obj, factory, os.getpid()
        return self

    if not TYPE_CHECKING:
        # Hidden from type checkers, so a typo is reported: the generated classes declare the
        # async object's public attributes.

        def __getattr__(self, name: str) -> Any:
            # Instance attributes of the async object (project_name, settings, ...), read-only;
            # an async component held by it (a facade's task_queue, say) is handed out as its
            # twin.
            if name.startswith("_"):
                raise AttributeError(name)
            value = getattr(self._target(), name)
            twin = twin_of(type(value))
            if twin is not None:
                return twin._wrap(value, lambda: value)
            return value

    def __enter__(self) -> Self:
        _portal.run(self._target().__aenter__())  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        _portal.run(self._target().__aexit__(*exc_info))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._async!r}>"


def twin_of(async_cls: type) -> type[SyncTwin[Any]] | None:
    """The sync twin of an async class: generated in its package's ``_twins`` module (imported
    here on first use) or, for a plugin's class, declared wherever it is imported."""
    twin = _TWINS.get(async_cls)
    if twin is None and async_cls not in _SEARCHED:
        _SEARCHED.add(async_cls)
        package = async_cls.__module__.rpartition(".")[0]
        generated = f"{package}._twins"
        try:
            if package:
                importlib.import_module(generated)
        except ModuleNotFoundError as exc:
            if exc.name != generated:
                raise
        twin = _TWINS.get(async_cls)
    return twin


class AsyncProxy:
    """Lets async code on another loop use a sync twin: each call hops to the twin's loop."""

    def __init__(self, twin: SyncTwin[Any]) -> None:
        self._twin = twin

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._twin._target(), name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            future = asyncio.run_coroutine_threadsafe(attr(*args, **kwargs), _portal.loop)
            return await asyncio.wrap_future(future)

        return call

    def __repr__(self) -> str:
        return f"<AsyncProxy of {self._twin!r}>"


def as_async(component: Any) -> Any:
    """The async object to use for a component given as either twin, on the running loop."""
    if not isinstance(component, SyncTwin):
        return component
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is _portal.loop:
        return component._target()
    return AsyncProxy(component)
