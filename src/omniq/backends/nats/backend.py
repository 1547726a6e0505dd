"""The NATS backend: task queue and results on JetStream (``omniq[nats]``); events go elsewhere."""

from __future__ import annotations

from omniq.backend.base import Backend
from omniq.config import Settings

__all__ = ["NATSBackend"]


class NATSBackend(Backend):
    """Task queue and results on NATS JetStream (``servers=["nats://host:4222"]``). NATS keeps no
    event storage: pass ``event_store_backend=`` to ``OmniQ.from_backend``."""

    name = "nats"

    def __init__(
        self,
        *,
        project_name: str | None = None,
        servers: str | list[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(project_name=project_name, servers=servers, settings=settings)
