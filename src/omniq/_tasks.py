"""Waiting and stopping for the library's own background asyncio tasks.

Python 3.11's ``asyncio.wait_for`` swallows a cancellation that arrives just as the awaited
thing completes. The library avoids it, but drivers it calls (redis-py, nats-py) still use it,
so a loop cancelled while inside a driver call can keep running. These helpers make waiting and
stopping immune to that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

__all__ = ["cancel_and_wait", "wait_within"]

logger = logging.getLogger("omniq")

_RECANCEL_EVERY = 0.5


async def wait_within(awaitable: Awaitable[object], timeout: float | None) -> bool:
    """Await ``awaitable`` for at most ``timeout`` seconds; False on timeout."""
    try:
        async with asyncio.timeout(timeout):
            await awaitable
        return True
    except TimeoutError:
        return False


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object] | None]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any that swallowed
    the cancellation; failures other than the cancellation are logged."""
    every = [t for t in tasks if t is not None]
    pending = {t for t in every if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_EVERY)
    for task in every:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("background task %s failed", task.get_name(), exc_info=task.exception())
