"""OmniQ in an ASGI app (Starlette, FastAPI, or any framework with lifespans): an
``AsyncOmniQ`` open for the app's lifetime, optionally with a worker in the app's process, and
a dependency that hands it to routes.

::

    from omniq import AsyncOmniQ
    from omniq.contrib.asgi import get_omniq, omniq_lifespan

    app = Starlette(routes=..., lifespan=omniq_lifespan(AsyncOmniQ.from_env))

    async def enqueue(request):
        oq = get_omniq(request)
        ...

The facade is on ``app.state.omniq`` and in the lifespan state (``request.state.omniq``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from omniq.facade import AsyncOmniQ

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "omniq.contrib.asgi needs Starlette: install the extra omniq[asgi] (or omniq[fastapi])"
    ) from exc

__all__ = ["STATE_KEY", "get_omniq", "omniq_lifespan", "open_omniq"]

#: The name of the facade in ``app.state`` and in the lifespan state.
STATE_KEY = "omniq"

OmniQSource = AsyncOmniQ | Callable[[], AsyncOmniQ] | None
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def _build(source: OmniQSource) -> AsyncOmniQ:
    if source is None:
        return AsyncOmniQ.from_env()
    if isinstance(source, AsyncOmniQ):
        return source
    built = source()
    if not isinstance(built, AsyncOmniQ):
        raise TypeError(f"the OmniQ factory returned {type(built).__name__}, not an AsyncOmniQ")
    return built


@contextlib.asynccontextmanager
async def open_omniq(
    app: Any,
    omniq: OmniQSource = None,
    *,
    worker: bool = False,
    worker_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[AsyncOmniQ]:
    """Open an ``AsyncOmniQ`` for the body of the block, set as ``app.state.omniq``; for use
    inside a lifespan of your own.

    Args:
        app: the ASGI app (its ``state`` gets the facade when it has one).
        omniq: an ``AsyncOmniQ``, or a callable that builds one on the app's event loop
            (default: ``AsyncOmniQ.from_env``, the ``OMNIQ_*`` settings).
        worker: also run the facade's worker in the app's process, from startup to shutdown
            (small deployments; a graceful stop at shutdown lets running tasks finish).
        worker_options: overrides of the facade's ``worker_config`` for that worker.
    """
    oq = _build(omniq)
    state = getattr(app, "state", None)
    async with oq:
        if worker:
            await oq.start_worker(**dict(worker_options or {}))
        if state is not None:
            setattr(state, STATE_KEY, oq)
        try:
            yield oq
        finally:
            if state is not None and getattr(state, STATE_KEY, None) is oq:
                delattr(state, STATE_KEY)


def omniq_lifespan(
    omniq: OmniQSource = None,
    *,
    worker: bool = False,
    worker_options: Mapping[str, Any] | None = None,
) -> Lifespan:
    """A lifespan for ``Starlette(lifespan=...)`` / ``FastAPI(lifespan=...)`` that opens an
    ``AsyncOmniQ`` at startup and closes it at shutdown; arguments as :func:`open_omniq`.

    The lifespan yields ``{"omniq": oq}``, so routes find it on ``request.state`` too. Pass
    a factory (``AsyncOmniQ.from_env``, a lambda) rather than an instance when the app may be
    started more than once (tests): each startup then gets a fresh facade.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with open_omniq(app, omniq, worker=worker, worker_options=worker_options) as oq:
            yield {STATE_KEY: oq}

    return lifespan


def get_omniq(connection: HTTPConnection) -> AsyncOmniQ:
    """The app's ``AsyncOmniQ`` for a request or websocket (a FastAPI dependency as it is:
    ``oq: AsyncOmniQ = Depends(get_omniq)``)."""
    found = getattr(connection.state, STATE_KEY, None)
    if found is None:
        found = getattr(connection.app.state, STATE_KEY, None)
    if found is None:
        raise RuntimeError(
            "no OmniQ on this app: give it lifespan=omniq_lifespan(...) "
            "(or use open_omniq(app, ...) in your own lifespan)"
        )
    return found
