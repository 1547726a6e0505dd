"""Sync twins of async classes, from one mechanism.

Each process has one :class:`LoopThread`: an event loop in a daemon thread. A sync twin creates
its async object on that loop and sends every call there with ``run_coroutine_threadsafe`` (one
thread hop per call). Methods, signatures and docstrings are derived from the async class, never
re-typed. After ``fork`` the child gets a fresh loop thread and each twin re-creates its async
object from the arguments it was built with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from omniq.errors import LoopThreadError

__all__ = ["AsyncProxy", "LoopThread", "SyncTwin", "as_async", "portal"]

T = TypeVar("T")


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
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

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


_portal = LoopThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_portal.reset_after_fork)


def portal() -> LoopThread:
    """The process-wide loop thread that serves every sync twin."""
    return _portal


_TWINS: dict[type, type[SyncTwin]] = {}


class SyncTwin:
    """Base of the sync classes; ``class X(SyncTwin, twin=AsyncX)`` derives every method."""

    _async_class: ClassVar[type]
    _async: Any
    _factory: Callable[[], Any]
    _pid: int

    def __init_subclass__(cls, twin: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if twin is None:
            return
        cls._async_class = twin
        _TWINS[twin] = cls
        if "__doc__" not in cls.__dict__ or cls.__doc__ is None:
            cls.__doc__ = twin.__doc__
        for name in dir(twin):
            if name.startswith("_") or name in cls.__dict__:
                continue
            raw = inspect.getattr_static(twin, name)
            if isinstance(raw, classmethod):
                setattr(cls, name, _sync_classmethod(twin, name))
            elif isinstance(raw, staticmethod):
                setattr(cls, name, raw)
            elif inspect.iscoroutinefunction(raw):
                setattr(cls, name, _sync_method(raw))
            elif isinstance(raw, property):
                setattr(cls, name, _forward_property(name, raw))
            elif callable(raw):
                setattr(cls, name, _forward_method(raw))
        init = _sync_init(twin)
        cls.__init__ = init  # type: ignore[method-assign]

    def _target(self) -> Any:
        """The async object, re-created in a child process after fork."""
        if self._pid != os.getpid():
            self._async = _portal.call(self._factory)
            self._pid = os.getpid()
        return self._async

    @classmethod
    def _wrap(cls, async_obj: Any, factory: Callable[[], Any]) -> Any:
        self = cls.__new__(cls)
        self._async, self._factory, self._pid = async_obj, factory, os.getpid()
        return self

    def __getattr__(self, name: str) -> Any:
        # Instance attributes of the async object (project_name, settings, ...), read-only; an
        # async component held by it (a facade's task_queue, say) is handed out as its twin.
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._target(), name)
        twin = _TWINS.get(type(value))
        if twin is not None:
            return twin._wrap(value, lambda: value)
        return value

    def __enter__(self) -> Any:
        _portal.run(self._target().__aenter__())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _portal.run(self._target().__aexit__(*exc_info))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._async!r}>"


def _sync_init(twin: type) -> Callable[..., None]:
    def __init__(self: SyncTwin, *args: Any, **kwargs: Any) -> None:
        self._factory = functools.partial(twin, *args, **kwargs)
        self._pid = os.getpid()
        self._async = _portal.call(self._factory)

    __init__.__signature__ = inspect.signature(twin.__init__)  # type: ignore[attr-defined]
    __init__.__doc__ = twin.__init__.__doc__
    return __init__


def _sync_method(async_method: Callable[..., Any]) -> Callable[..., Any]:
    name = async_method.__name__

    @functools.wraps(async_method)
    def method(self: SyncTwin, *args: Any, **kwargs: Any) -> Any:
        return _portal.run(getattr(self._target(), name)(*args, **kwargs))

    return method


def _forward_method(plain: Callable[..., Any]) -> Callable[..., Any]:
    name = plain.__name__

    @functools.wraps(plain)
    def method(self: SyncTwin, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._target(), name)(*args, **kwargs)

    return method


def _forward_property(name: str, prop: property) -> property:
    def getter(self: SyncTwin) -> Any:
        return getattr(self._target(), name)

    return property(getter, doc=prop.__doc__)


def _sync_classmethod(twin: type, name: str) -> classmethod:  # type: ignore[type-arg]
    func = getattr(twin, name)

    @functools.wraps(func)
    def method(cls: type[SyncTwin], *args: Any, **kwargs: Any) -> Any:
        factory = functools.partial(func, *args, **kwargs)
        result = _portal.call(factory)
        if isinstance(result, twin):
            return cls._wrap(result, factory)
        return result

    return classmethod(method)


class AsyncProxy:
    """Lets async code on another loop use a sync twin: each call hops to the twin's loop."""

    def __init__(self, twin: SyncTwin) -> None:
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
