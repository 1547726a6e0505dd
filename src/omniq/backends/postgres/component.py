"""What every PostgreSQL component (task queue, result and event storage) holds: its validated
connection options and client (a pool shared per event loop), and for the queue and the results
a listener on the project's notification channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omniq.backends.postgres.codec import channel_name
from omniq.backends.postgres.connection import Client, connect_options
from omniq.backends.postgres.listener import Listener

if TYPE_CHECKING:
    from typing import Unpack

    from omniq.backends.postgres.options import PostgresConnection

__all__ = ["Connected"]


class Connected:
    """Mixin of the PostgreSQL components (set ``project_name`` before ``_connect``)."""

    project_name: str

    def _connect(self, **connection: Unpack[PostgresConnection]) -> None:
        self.options = connect_options(**connection)
        self._db = Client(self.options)

    def _listen(self, kind: str) -> None:
        """Listen on the project's ``kind`` channel (``tasks``, ``results``), from first use."""
        self._channel = channel_name(kind, self.project_name)
        self._listener = Listener(self.options, self._channel)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.describe()} project={self.project_name!r}>"
