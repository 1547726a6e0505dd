"""FastAPI sugar over :mod:`omniq.contrib.asgi`: ``OmniQDep``, an annotated dependency.

::

    from fastapi import FastAPI
    from omniq.contrib.asgi import omniq_lifespan
    from omniq.contrib.fastapi import OmniQDep

    app = FastAPI(lifespan=omniq_lifespan(AsyncOmniQ.from_env))

    @app.post("/jobs")
    async def create(oq: OmniQDep) -> dict[str, str]:
        return {"task_id": await oq.enqueue("myapp.tasks:work")}
"""

from __future__ import annotations

from typing import Annotated

from omniq.contrib.asgi import get_omniq, omniq_lifespan, open_omniq
from omniq.facade import AsyncOmniQ

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "omniq.contrib.fastapi needs FastAPI: install the extra omniq[fastapi]"
    ) from exc

__all__ = ["OmniQDep", "get_omniq", "omniq_lifespan", "open_omniq"]

#: A route parameter ``oq: OmniQDep`` receives the app's ``AsyncOmniQ``.
OmniQDep = Annotated[AsyncOmniQ, Depends(get_omniq)]
