"""Calling a task function with its context set, from a thread or a coroutine."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from omniq.context import TaskContext, reset_current, set_current

__all__ = ["call_in_thread", "is_async_callable"]

_thread_loops = threading.local()


def is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (asked once per function: a worker asks
    for every task, and a sync function takes both ``inspect`` checks every time)."""
    target = getattr(func, "__omniq_func__", func)
    try:
        return _is_async_cached(target)
    except TypeError:  # an unhashable callable object
        return _is_async(target)


def _is_async(target: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    )


_is_async_cached = functools.lru_cache(maxsize=1024)(_is_async)


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop


def call_in_thread(
    func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], ctx: TaskContext
) -> Any:
    """Run ``func`` in the calling (worker) thread; coroutines run on this thread's own loop."""
    token = set_current(ctx)
    try:
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = _thread_loop().run_until_complete(_awaited(value))
        return value
    finally:
        reset_current(token)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
