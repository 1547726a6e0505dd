"""Fixtures shared by every test: backend specs, fresh projects, condition waits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
# Worker subprocesses import the task functions from tests/.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
)

import importlib  # noqa: E402
import pkgutil  # noqa: E402

from backends import EMBEDDED, BackendSpec, embedded_specs  # noqa: E402

from omniq.queue import AsyncSQLiteTaskQueue  # noqa: E402
from omniq.storage import AsyncSQLiteResultStorage  # noqa: E402

# Every module in tests/servers/ brings a server fixture and the backends that use it; a backend
# whose server cannot start fails its tests (never skips).
_SERVER_MODULES = [f"servers.{m.name}" for m in pkgutil.iter_modules([str(TESTS_DIR / "servers")])]
pytest_plugins = _SERVER_MODULES
pytest.register_assert_rewrite(*_SERVER_MODULES)
SERVER_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {}
for _module in _SERVER_MODULES:
    SERVER_BACKENDS.update(importlib.import_module(_module).BACKENDS)

BACKENDS = [*EMBEDDED, *SERVER_BACKENDS]
MULTIPROCESS_BACKENDS = [
    name
    for name in BACKENDS
    if name in SERVER_BACKENDS or embedded_specs(Path("/nonexistent"))[name].multiprocess
]


def make_spec(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> BackendSpec:
    if name in SERVER_BACKENDS:
        return SERVER_BACKENDS[name](request, tmp_path)
    return embedded_specs(tmp_path)[name]


@pytest.fixture(params=BACKENDS)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    return make_spec(request, request.param, tmp_path)


@pytest.fixture(params=MULTIPROCESS_BACKENDS)
def mp_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    """Backends whose storage several OS processes share."""
    return make_spec(request, request.param, tmp_path)


@pytest.fixture
def project() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@dataclass
class Storages:
    spec: BackendSpec
    project: str
    queue: Any
    results: Any
    events: Any


async def _open(spec: BackendSpec, project: str) -> AsyncIterator[Storages]:
    queue, results, events = (
        spec.make_queue(project),
        spec.make_results(project),
        spec.make_events(project),
    )
    try:
        yield Storages(spec, project, queue, results, events)
    finally:
        for component in (queue, results, events):
            if component is not None:
                await component.close()


@pytest.fixture
async def storages(spec: BackendSpec, project: str) -> AsyncIterator[Storages]:
    async for opened in _open(spec, project):
        yield opened


@pytest.fixture
async def mp_storages(mp_spec: BackendSpec, project: str) -> AsyncIterator[Storages]:
    async for opened in _open(mp_spec, project):
        yield opened


@pytest.fixture
async def stores(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncSQLiteTaskQueue, AsyncSQLiteResultStorage]]:
    """An SQLite task queue and result storage on one database file (worker-kind tests)."""
    db = str(tmp_path / "omniq.db")
    queue, results = AsyncSQLiteTaskQueue(db_path=db), AsyncSQLiteResultStorage(db_path=db)
    yield queue, results
    await queue.close()
    await results.close()


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Wait for a condition (polling); fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """``wait_until`` for sync code (tests of the sync API and of subprocesses)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM a child process still running, and SIGKILL it if it outlives ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are world-readable unless created otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes_under(root: Path) -> dict[str, int]:
    """The permission bits of ``root`` and of everything below it, by relative path."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in paths}
