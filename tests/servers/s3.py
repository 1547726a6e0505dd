"""A real S3 API for the tests: moto's server mode (``python -m moto.server``, from the dev
extra's ``moto[server]``) in a subprocess on a loopback port, with one bucket, stopped at the
end. Its data lives in memory; each test isolates itself with a fresh project name (a prefix).

The conformance suite runs on "file-s3" in part (:data:`CONFORMANCE_ON_S3`): every S3 request
goes through moto, some 20 per task, so the whole suite there takes over four minutes. The part
run covers what the store decides (claims, leases, keys, records, schedules, worker processes
and crashes); the rest is policy above the store, run on the local file backend. The 300- and
600-task throughput runs are replaced by tests/test_s3_backend.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import BackendSpec, backend_spec, file_corrupter

from servers import free_port, shared_server

__all__ = ["BACKENDS", "BUCKET", "CONFORMANCE_ON_S3", "S3Server", "s3_server"]

BUCKET = "omniq-tests"
_START_TIMEOUT = 30.0
CONFORMANCE_ON_S3 = (
    "test_construction_contract.py",
    "test_queue_contract.py",
    "test_queue_order_contract.py",
    "test_records_contract.py",
    "test_schedules_contract.py",
    "test_security_contract.py",
    "test_worker_contract.py",
)
_TOO_SLOW_ON_S3 = (
    "test_many_tasks_each_run_once",
    "test_three_worker_processes_run_each_task_once",
)


class S3Server:
    """One moto server on 127.0.0.1 with the bucket :data:`BUCKET`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="omniq-moto-")) / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """What the file backend needs to reach this server (fsspec's s3fs keywords)."""
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def base_dir(self, prefix: str = "omniq") -> str:
        return f"s3://{BUCKET}/{prefix}"

    def start(self) -> None:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._make_bucket():
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server silent for {_START_TIMEOUT} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _make_bucket(self) -> bool:
        import botocore.exceptions
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)
        try:
            fs.call_s3("create_bucket", Bucket=BUCKET)
        except (OSError, botocore.exceptions.EndpointConnectionError):
            return False
        return True

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def destroy(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's S3 API (moto)."""
    yield from shared_server("s3", S3Server)


def _s3_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    server: S3Server = request.getfixturevalue("s3_server")
    base = server.base_dir()
    options = {"base_dir": base, "storage_options": server.storage_options}
    return backend_spec(
        "file-s3",
        "File",
        options,
        package="file",
        corrupt=file_corrupter(base, server.storage_options),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {
    "file-s3": _s3_spec,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the conformance tests that "file-s3" does not run (never a skip)."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_s3 = callspec is not None and "file-s3" in callspec.params.values()
        name = getattr(item, "originalname", item.name)
        if (
            on_s3
            and "conformance" in item.path.parts
            and (item.path.name not in CONFORMANCE_ON_S3 or name in _TOO_SLOW_ON_S3)
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
