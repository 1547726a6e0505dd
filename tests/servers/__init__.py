"""Real servers for the tests, one module per server kind.

Each module starts its server on a loopback port in a temporary directory (session-scoped
fixture), stops it at the end, and registers the conformance backends that use it:

    BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]]

A missing server binary is a test failure, never a skip.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
