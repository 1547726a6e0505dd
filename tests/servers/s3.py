"""A real S3 API for the tests: moto's server mode (``python -m moto.server``, from the dev
extra's ``moto[server]``) in a subprocess on a loopback port, with one bucket, stopped at the
end. Its data lives in memory; each test isolates itself with a fresh project name (a prefix).
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

__all__ = ["BACKENDS", "BUCKET", "S3Server", "s3_server"]

BUCKET = "omniq-tests"
_START_TIMEOUT = 30.0


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
