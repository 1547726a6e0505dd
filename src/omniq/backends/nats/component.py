"""What the NATS task queue and result storage hold: the servers, bucket replicas and
``nats.connect`` keywords, the project's token, and a client connected on first use on each event
loop with the component's buckets in place."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from omniq._redact import redact
from omniq.backends.nats.client import Client, acquire
from omniq.backends.nats.layout import servers_list, token
from omniq.errors import require

__all__ = ["Connected"]


class Connected:
    """Mixin of the NATS components (set ``project_name`` before ``_open``; ``_buckets`` names
    the streams the component needs)."""

    project_name: str

    def _open(
        self,
        *,
        servers: str | Sequence[str] | None = None,
        replicas: int = 1,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        """Take the keywords of :class:`~omniq.backends.nats.options.NATSConnection`."""
        # The driver loads here, not on first use (as the PostgreSQL backend does): a missing
        # extra fails at once, and its import (~0.25 s, aiohttp) does not delay the first call.
        require("nats.aio.client", "nats")
        self.servers = servers_list(servers)
        self.replicas = replicas
        self._options = dict(connect_options or {})
        self._p = token(self.project_name)
        self._client: Client | None = None
        self._setup: asyncio.Future[Client] | None = None

    def _buckets(self) -> list[dict[str, Any]]:
        """The stream configs of the buckets this component uses (created when missing)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        servers = redact(",".join(self.servers))
        return f"<{type(self).__name__} {servers} project={self.project_name!r}>"

    async def _c(self) -> Client:
        """The client, connected and with the buckets in place."""
        client = self._client
        if client is not None and client.loop is asyncio.get_running_loop():
            return client
        if self._setup is None or self._setup.get_loop() is not asyncio.get_running_loop():
            self._setup = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._setup)

    async def _connect(self) -> Client:
        client = await acquire(self.servers, self._options)
        try:
            for config in self._buckets():
                await client.ensure_stream(config)
        except BaseException:
            self._setup = None
            await client.release()
            raise
        self._client = client
        return client
