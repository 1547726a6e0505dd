"""Connections: options, one pool per (event loop, server) shared by a process's objects, the
schema check, and the translation of driver errors.

An asyncpg pool belongs to the loop that created it. Each storage object asks for its pool on
the running loop at every call: objects with the same connection options on the same loop share
one pool (a worker's queue, results and events use a handful of connections, not three pools),
and an object used later from another loop gets a pool there (one loop at a time).

A lost connection (server restart, network) fails the call in progress with a StorageError; the
pool replaces dead connections on the next acquire, so callers go on once the server is back.
Reads and idempotent writes are retried once at once, which hides a restart that happened while
the connection sat idle in the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from omniq._redact import redact
from omniq.backends.postgres.sql import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from omniq.errors import ConfigError, StorageError, require

__all__ = [
    "Client",
    "ConnectOptions",
    "connect_options",
    "ensure_schema",
    "shielded",
    "storage_error",
]

T = TypeVar("T")

_SCHEMA_LOCK = 0x6F6D6E6971  # pg_advisory_xact_lock key serialising OmniQ's DDL ("omniq")
_CLOSE_TIMEOUT = 10.0
# Settings of every OmniQ session. Every statement is written to be answered in index order
# (ordered scans of partial indexes that stop early, primary-key lookups). A queue table's
# statistics are always stale (rows move between statuses by the thousand between two ANALYZE
# runs), and with stale statistics the planner was seen to trade the ordered scan of a claim
# for a range scan of 10,000 rows and a sort (4 ms instead of 0.2 ms). Sorts and sequential
# scans are therefore priced out (still used where nothing else can answer), which leaves the
# hot statements one plan whatever the statistics; that plan is made once per connection
# (generic plans: re-planning the claim at each execution cost as much as running it). JIT is
# off: short statements gain nothing from it. benchmarks/postgres.py --explain shows the plans.
SERVER_SETTINGS = {
    "enable_sort": "off",
    "enable_seqscan": "off",
    "plan_cache_mode": "force_generic_plan",
    "jit": "off",
    "application_name": "omniq",
}


@dataclass(frozen=True)
class ConnectOptions:
    """Where and how to connect (hashable: the key of the shared pools)."""

    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout: float = 10.0

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``asyncpg.connect`` (unset parts come from the DSN or PG*
        environment variables)."""
        kwargs: dict[str, Any] = {
            "dsn": self.dsn,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs["timeout"] = self.connect_timeout
        kwargs["server_settings"] = SERVER_SETTINGS
        return kwargs

    def describe(self) -> str:
        """Where this connects to, without the password."""
        parts = urlsplit(self.dsn) if self.dsn else None
        host = self.host or (parts.hostname if parts else None) or "localhost"
        port = self.port or (parts.port if parts else None) or 5432
        database = self.database or (parts.path.lstrip("/") if parts else "") or "(default)"
        return f"{host}:{port}/{database}"


def connect_options(
    *,
    dsn: str | None = None,
    host: str | None = None,
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    database: str | None = None,
    pool_min_size: int | None = None,
    pool_max_size: int | None = None,
) -> ConnectOptions:
    """Validated connection options (ConfigError names the bad field); the keywords of
    :class:`~omniq.backends.postgres.options.PostgresConnection`. Needs the driver."""
    require("asyncpg", "postgres")
    if dsn is not None and not (
        isinstance(dsn, str) and dsn.startswith(("postgresql://", "postgres://"))
    ):
        shown = repr(redact(dsn)) if isinstance(dsn, str) else type(dsn).__name__
        raise ConfigError(f"dsn must be a 'postgresql://...' URL, got {shown}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        raise ConfigError(f"port must be an int in 1..65535, got {port!r}")
    low = 1 if pool_min_size is None else pool_min_size
    high = max(10, low) if pool_max_size is None else pool_max_size
    for name, value in (("pool_min_size", low), ("pool_max_size", high)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    if high < 1 or low > high:
        raise ConfigError(f"pool_max_size must be >= 1 and >= pool_min_size, got {low}..{high}")
    return ConnectOptions(dsn, host, port, username, password, database, low, high)


def storage_error(options: ConnectOptions, exc: BaseException) -> StorageError:
    """A StorageError saying what failed where (chain it with ``from exc``)."""
    detail = redact(str(exc)) or type(exc).__name__
    return StorageError(f"PostgreSQL at {options.describe()}: {type(exc).__name__}: {detail}")


async def shielded(work: Awaitable[T]) -> T:
    """Await ``work`` so that cancelling the caller does not cut it off halfway: it completes
    (or fails, logged nowhere) in the background, and the caller gets CancelledError at once."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the connection (not the statement) failed."""
    asyncpg = require("asyncpg", "postgres")
    return (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
        asyncpg.exceptions.InternalClientError,
        OSError,
        TimeoutError,
    )


async def ensure_schema(conn: Any) -> None:
    """Create or migrate the schema; safe when many processes start at once."""
    version = await _schema_version(conn)
    if version == SCHEMA_VERSION:
        return
    _check_not_newer(version)
    async with conn.transaction():
        # DDL of concurrent starters would collide (duplicate types, half-made tables): one at
        # a time, and the losers find the work done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(SCHEMA["meta_table"])
        version = await _schema_version(conn)
        _check_not_newer(version)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[number])
        await conn.execute(SCHEMA["set_schema_version"], str(SCHEMA_VERSION))


async def _schema_version(conn: Any) -> int:
    if not await conn.fetchval(SCHEMA["meta_exists"]):
        return 0
    value = await conn.fetchval(SCHEMA["schema_version"])
    return int(value) if value is not None else 0


def _check_not_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has OmniQ schema version {version}, newer than this OmniQ's "
            f"{SCHEMA_VERSION}: upgrade OmniQ"
        )


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: OmniQ leaves no session state behind (no SET, LISTEN or session
    locks on pooled connections), so the default reset query's round trip is skipped."""


class _SharedPool:
    """One asyncpg pool on one loop, created (and the schema checked) on first use."""

    def __init__(self, options: ConnectOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.options = options
        self.loop = loop
        self.users = 0
        self.pool: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        if self.pool is not None:
            return self.pool
        async with self._lock:
            if self.pool is None:
                asyncpg = require("asyncpg", "postgres")
                pool = await asyncpg.create_pool(
                    **self.options.connect_kwargs(),
                    min_size=self.options.pool_min_size,
                    max_size=self.options.pool_max_size,
                    reset=_keep_session,
                )
                try:
                    async with pool.acquire() as conn:
                        await ensure_schema(conn)
                except BaseException:
                    pool.terminate()
                    raise
                self.pool = pool
        return self.pool

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        gone: tuple[type[BaseException], ...] = (TimeoutError, *connection_errors())
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except gone:
            pool.terminate()

    def abandon(self) -> None:
        """Drop the pool from outside its loop (that loop is closed or busy elsewhere)."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if self.loop.is_closed():
            with contextlib.suppress(Exception):
                pool.terminate()
        else:
            self.loop.call_soon_threadsafe(pool.terminate)


_pools: dict[tuple[asyncio.AbstractEventLoop, ConnectOptions], _SharedPool] = {}
_pools_lock = threading.Lock()


def _acquire(loop: asyncio.AbstractEventLoop, options: ConnectOptions) -> _SharedPool:
    with _pools_lock:
        for key in [key for key in _pools if key[0].is_closed()]:
            _pools.pop(key).abandon()
        shared = _pools.get((loop, options))
        if shared is None:
            shared = _pools[(loop, options)] = _SharedPool(options, loop)
        shared.users += 1
        return shared


def _release(shared: _SharedPool) -> bool:
    """Drop one user; True when it was the last (the caller then closes the pool)."""
    with _pools_lock:
        shared.users -= 1
        if shared.users > 0:
            return False
        key = (shared.loop, shared.options)
        if _pools.get(key) is shared:
            del _pools[key]
        return True


class Client:
    """What one storage object uses: the shared pool of the running loop, and error mapping."""

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self._shared: _SharedPool | None = None

    def _pool_holder(self) -> _SharedPool:
        loop = asyncio.get_running_loop()
        shared = self._shared
        if shared is None or shared.loop is not loop:
            if shared is not None and _release(shared):
                shared.abandon()
            shared = self._shared = _acquire(loop, self.options)
        return shared

    async def run(self, op: Callable[[Any], Awaitable[T]], *, retry: bool = False) -> T:
        """Run ``op(connection)`` on a pooled connection; driver errors become StorageError.

        With ``retry``, a connection failure is retried once (only for idempotent work).
        """
        asyncpg = require("asyncpg", "postgres")
        lost = connection_errors()
        for attempt in range(2 if retry else 1):
            try:
                pool = await self._pool_holder().get()
                async with pool.acquire() as conn:
                    return await op(conn)
            except lost as exc:
                if attempt == 0 and retry:
                    continue
                raise storage_error(self.options, exc) from exc
            except asyncpg.PostgresError as exc:
                raise storage_error(self.options, exc) from exc
        raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any, retry: bool = False) -> list[Any]:
        return await self.run(lambda conn: conn.fetch(sql, *args), retry=retry)

    async def fetchrow(self, sql: str, *args: Any, retry: bool = False) -> Any:
        return await self.run(lambda conn: conn.fetchrow(sql, *args), retry=retry)

    async def fetchval(self, sql: str, *args: Any, retry: bool = False) -> Any:
        return await self.run(lambda conn: conn.fetchval(sql, *args), retry=retry)

    async def execute(self, sql: str, *args: Any, retry: bool = False) -> str:
        return await self.run(lambda conn: conn.execute(sql, *args), retry=retry)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection for several statements (errors are not translated here)."""
        pool = await self._pool_holder().get()
        async with pool.acquire() as conn:
            yield conn

    async def close(self) -> None:
        """Release this object's share of the pool (closed with its last user)."""
        shared, self._shared = self._shared, None
        if shared is None or not _release(shared):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is shared.loop:
            await shared.close()
        else:
            shared.abandon()
