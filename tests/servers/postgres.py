"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

The server listens on 127.0.0.1 (a free port) and on a unix socket inside its directory. As root
(here and in CI) initdb and postgres refuse to run, so they run as the ``postgres`` system user
(created by Debian's ``postgresql`` package) with the directory handed to that user. The test
server trades durability for speed (``fsync=off``); benchmarks start one with the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import BackendSpec, Corrupt, backend_spec

from servers import free_port, shared_server

__all__ = ["BACKENDS", "PostgresServer", "find_binaries", "postgres_server_fixture"]

_SERVER_USER = "postgres"
_SUPERUSER = "omniq"


def find_binaries() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version first)."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for directory in candidates:
        if all((Path(directory) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        "/usr/lib/postgresql/*/bin or on PATH: install them (Debian: apt-get install postgresql)"
    )


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; ``start``/``stop`` may be repeated."""

    def __init__(self, *, durable: bool = False, max_connections: int = 200) -> None:
        self.bin = find_binaries()
        self.port = free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="omniq-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self._user = pwd.getpwnam(_SERVER_USER) if os.geteuid() == 0 else None
        self.sockets.mkdir()
        if self._user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", _SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")  # fmt: skip

    @property
    def dsn(self) -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            f"-k {self.sockets}",
            f"-c max_connections={self.max_connections}",
            "-c shared_buffers=256MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", " ".join(options), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql over the unix socket; returns its unaligned output."""
        where = ["-h", str(self.sockets), "-p", str(self.port), "-U", _SUPERUSER, "-d", database]
        return self._run("psql", *where, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> str:
        user = self._user

        def demote() -> None:
            assert user is not None
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        proc = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            cwd=self.root,
            preexec_fn=demote if user is not None else None,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}\n{log}"
            )
        return proc.stdout


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started once, even if this fixture is imported twice)."""
    yield from shared_server("postgres", PostgresServer)


# Typed columns: what a bad UPDATE can still leave (a text priority cannot be stored).
_BAD_VALUES = {
    "run_at": "'infinity'",
    "payload": "'\\xc1'::bytea",
    "status": "'bogus'",
    "attempts": "-7",
    "max_retries": "-1",
}


def _corrupter(server: PostgresServer) -> Corrupt:
    async def corrupt(project: str, task: Any, name: str) -> None:
        sql = (
            f"UPDATE omniq_tasks SET {name} = {_BAD_VALUES[name]} "
            f"WHERE project = '{project}' AND id = '{task.id}' RETURNING id"
        )
        assert (await asyncio.to_thread(server.psql, sql)).split() == [task.id, "UPDATE", "1"]

    return corrupt


def _spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return backend_spec(
        "postgres",
        "Postgres",
        {"dsn": server.dsn},
        corrupt=_corrupter(server),
        corruptible=tuple(_BAD_VALUES),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {"postgres": _spec}
