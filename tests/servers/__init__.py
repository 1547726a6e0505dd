"""Real servers for the tests, one module per server kind.

Each module starts its server on a loopback port in a temporary directory (session-scoped
fixture), stops it at the end, and registers the conformance backends that use it:

    BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]]

A missing server binary is a test failure, never a skip.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

_SHARED: dict[str, Any] = {}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_server(name: str, make: Callable[[], Any]) -> Iterator[Any]:
    """Body of a session fixture: start the server once (even if the fixture is imported twice),
    yield it, and destroy it at the end; a server that fails to start is destroyed too."""
    owner = name not in _SHARED
    if owner:
        server = make()
        try:
            server.start()
        except BaseException:
            server.destroy()
            raise
        _SHARED[name] = server
    try:
        yield _SHARED[name]
    finally:
        if owner:
            _SHARED.pop(name).destroy()
