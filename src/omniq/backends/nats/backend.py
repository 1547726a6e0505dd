"""The NATS backend: task queue and results on JetStream (``omniq[nats]``); events go elsewhere."""

from __future__ import annotations

from typing import Unpack

from omniq.backend.base import Backend, BackendOptions
from omniq.backends.nats.options import NATSConnection, NATSOptions

__all__ = ["NATSBackend", "NATSKeywords"]


class NATSKeywords(NATSConnection, BackendOptions, total=False):
    """The keywords of :class:`NATSBackend`."""


class NATSBackend(Backend):
    """Task queue and results on NATS JetStream (``servers=["nats://host:4222"]``,
    :class:`~omniq.backends.nats.options.NATSConnection`). NATS keeps no event storage: pass
    ``event_store_backend=`` to ``OmniQ.from_backend``."""

    name = "nats"
    options_class = NATSOptions

    def __init__(self, **options: Unpack[NATSKeywords]) -> None:
        super().__init__(**options)
