"""A real ``redis-server`` for the tests: loopback port, temporary directory, stopped at the end.

The session server keeps nothing on disk (``--save '' --appendonly no``); each test isolates
itself with a fresh project name. Tests that restart a server make their own
:class:`RedisServer` with ``appendonly=True`` so the data survives the restart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio
from backends import BAD_VALUES, BackendSpec, Corrupt, backend_spec

from servers import free_port

__all__ = ["BACKENDS", "RedisServer", "redis_server"]

_START_TIMEOUT = 15.0


def redis_binary() -> str:
    """The ``redis-server`` executable; a missing one fails the test (never a skip)."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        pytest.fail(
            "redis-server is not installed (not on PATH): the Redis backend tests need a real "
            "server; install Debian's package with `apt-get install redis-server`",
            pytrace=False,
        )
    return found


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its files in ``directory``."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.ping():
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited at start:\n{self.log()}", pytrace=False)
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer within {_START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM: Redis flushes its AOF), then kill if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ping(self) -> bool:
        """Whether the server answers PING (and has loaded its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's Redis server."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_BLOB_INDEX = {"payload": 1, "max_retries": 4}  # in the blob `d` (omniq.backends.redis.codec.Fixed)
_HASH_FIELD = {"priority": "p", "run_at": "r", "status": "s", "attempts": "a"}


def _corrupter(url: str) -> Corrupt:
    async def corrupt(project: str, task: Any, name: str) -> None:
        client = redis.asyncio.from_url(url)
        key = f"omniq:{{{project}}}:t:{task.id}"
        try:
            if name in _HASH_FIELD:
                await client.hset(key, _HASH_FIELD[name], BAD_VALUES[name])
            else:
                fixed = msgspec.msgpack.decode(await client.hget(key, "d"))
                fixed[_BLOB_INDEX[name]] = BAD_VALUES[name]
                await client.hset(key, "d", msgspec.msgpack.encode(fixed))
        finally:
            await client.aclose()

    return corrupt


def _redis_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    server: RedisServer = request.getfixturevalue("redis_server")
    return backend_spec(
        "redis",
        "Redis",
        {"url": server.url},
        events_db=tmp_path / "events.db",
        corrupt=_corrupter(server.url),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {
    "redis": _redis_spec,
}
