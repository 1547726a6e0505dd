"""Connections, scripts, driver-error translation and pub/sub listening for the Redis backend.

A :class:`Connection` is what each component holds: the redis-py asyncio client (created on first
use, on the loop that uses it), the Lua scripts of this package, and the project's key prefix.
Responses are never decoded (payloads are bytes). Dropped connections are retried by redis-py
(exponential backoff for a few seconds) before an error reaches the caller as
:class:`~omniq.errors.StorageError`; the worker core then retries the whole call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from omniq._redact import redact
from omniq._tasks import cancel_and_wait, wait_within
from omniq.backends.redis.keys import prefix
from omniq.errors import ConfigError, StorageError, require

if TYPE_CHECKING:
    from typing import Unpack

    from omniq.backends.redis.options import RedisConnection

__all__ = [
    "Connected",
    "Connection",
    "LocalPeers",
    "Subscription",
    "Waiters",
    "client_options",
    "load_script",
    "translate",
    "wait_future",
]

log = logging.getLogger("omniq")

_SCRIPTS = (
    "insert",
    "claim",
    "renew",
    "mark_started",
    "finish",
    "transition",
    "purge",
    "put_results",
    "put_record",
)
_WITH_LIB = frozenset(_SCRIPTS) - {"put_results", "put_record"}
# redis-py's own retries of a command after a dropped connection: 10 tries, 20 ms doubling up to
# 1 s, about 5 s in all, enough for a server restart. The worker core retries beyond that.
_RETRIES, _BACKOFF_BASE, _BACKOFF_CAP = 10, 0.02, 1.0
_RESUBSCRIBE_DELAY = (0.05, 2.0)  # the pub/sub listener's own backoff (first, cap)


@functools.cache
def load_script(name: str) -> str:
    """The Lua source of a script of this package (task scripts get ``_lib.lua`` first)."""
    package = resources.files(__name__.rpartition(".")[0])
    text = package.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if name in _WITH_LIB:
        text = package.joinpath("_lib.lua").read_text(encoding="utf-8") + "\n" + text
    return text


@functools.cache
def _script_shas() -> dict[str, str]:
    return {name: hashlib.sha1(load_script(name).encode()).hexdigest() for name in _SCRIPTS}


@functools.cache
def _redis_error() -> type[Exception]:
    return require("redis", "redis").RedisError


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Re-raise redis-py errors as :class:`StorageError` naming what failed."""
    try:
        yield
    except _redis_error() as exc:
        detail = redact(str(exc))
        raise StorageError(f"Redis: {action} failed: {type(exc).__name__}: {detail}") from exc
    except OSError as exc:  # a socket error redis-py did not wrap
        raise StorageError(f"Redis: {action} failed: {redact(str(exc))}") from exc


def client_options(
    *,
    url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    db: int | None = None,
    password: str | None = None,
    username: str | None = None,
    max_connections: int | None = None,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
) -> dict[str, Any]:
    """Validated connection options: one URL (keywords replace its parts) and pool options; the
    keywords of :class:`~omniq.backends.redis.options.RedisConnection`."""
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"url must be a str such as 'redis://127.0.0.1:6379/0', got {type(url).__name__}"
        )
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"url must start with redis://, rediss:// or unix://, got {redact(url)!r} "
            "(e.g. 'redis://127.0.0.1:6379/0')"
        )
    if max_connections is not None and (
        not isinstance(max_connections, int) or max_connections < 1
    ):
        raise ConfigError(f"max_connections must be an int >= 1, got {max_connections!r}")
    options: dict[str, Any] = {
        "url": _merged_url(url or "redis://127.0.0.1:6379/0", host, port, db, username, password),
        "max_connections": max_connections,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    return {k: v for k, v in options.items() if v is not None}


def _merged_url(
    url: str,
    host: str | None,
    port: int | None,
    db: int | None,
    username: str | None,
    password: str | None,
) -> str:
    """``url`` with the parts given as keywords replaced (redis-py would let the URL win)."""
    if host is None and port is None and db is None and username is None and password is None:
        return url
    parts = urlsplit(url)
    if db is not None and (not isinstance(db, int) or db < 0):
        raise ConfigError(f"db must be an int >= 0, got {db!r}")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"port must be an int from 1 to 65535, got {port!r}")
    if parts.scheme == "unix":
        if host is not None or port is not None:
            raise ConfigError("host and port do not apply to a unix:// url (a socket path)")
        query = "&".join(q for q in (parts.query, f"db={db}" if db is not None else "") if q)
        netloc = _credentials(parts, username, password) + parts.netloc.rpartition("@")[2]
        return f"unix://{netloc}{parts.path}" + (f"?{query}" if query else "")
    hostname = host if host is not None else parts.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6
    port = port if port is not None else parts.port
    netloc = _credentials(parts, username, password) + hostname + (f":{port}" if port else "")
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _credentials(parts: SplitResult, username: str | None, password: str | None) -> str:
    user = quote(username, safe="") if username is not None else parts.username or ""
    secret = quote(password, safe="") if password is not None else parts.password
    if not user and secret is None:
        return ""
    return f"{user}:{secret}@" if secret is not None else f"{user}@"


class Connection:
    """One component's client, scripts and key prefix; the client is made on first use."""

    def __init__(self, project: str, options: dict[str, Any]) -> None:
        self.prefix = prefix(project)
        self.options = options
        self._client: Any = None
        self._shas = _script_shas()
        self._no_script: type[Exception] = require("redis.exceptions", "redis").NoScriptError

    @property
    def client(self) -> Any:
        """The redis-py asyncio client (connections open lazily, on the first command)."""
        if self._client is None:
            self._client = _make_client(self.options)
        return self._client

    async def run(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Call a Lua script by name (EVALSHA; loaded on NOSCRIPT, e.g. after a restart)."""
        client = self.client
        sha = self._shas[name]
        try:
            return await client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        except self._no_script:
            await client.script_load(load_script(name))
            return await client.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with translate("closing the connection"):
                await client.aclose()

    @property
    def identity(self) -> tuple[Any, ...]:
        """What tells this server and project apart from others (no password)."""
        parts = urlsplit(self.options["url"])
        return (parts.scheme, parts.hostname, parts.port, parts.path, parts.query, self.prefix)

    def describe(self) -> str:
        """The server as a URL, its password masked."""
        return redact(self.options["url"])


def _make_client(options: dict[str, Any]) -> Any:
    asyncio_redis = require("redis.asyncio", "redis")
    backoff = require("redis.backoff", "redis")
    retry = require("redis.asyncio.retry", "redis")
    exceptions = require("redis.exceptions", "redis")
    options = dict(options)
    url = options.pop("url")
    return asyncio_redis.Redis.from_url(
        url,
        decode_responses=False,
        retry=retry.Retry(backoff.ExponentialBackoff(_BACKOFF_CAP, _BACKOFF_BASE), _RETRIES),
        retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
        socket_keepalive=True,
        **options,
    )


class Subscription:
    """A pub/sub listener on one channel, kept alive across dropped connections.

    ``on_message(data)`` runs for each message; ``on_ready()`` runs whenever the subscription is
    (re)confirmed, since messages sent while it was down are lost: callers then look again.
    """

    def __init__(
        self,
        connection: Connection,
        channel: str,
        on_message: Callable[[bytes], None],
        on_ready: Callable[[], None],
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._on_message = on_message
        self._on_ready = on_ready
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    async def started(self, timeout: float) -> bool:
        """Start listening if not yet; True once the subscription is confirmed."""
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name=f"omniq-redis-{self._channel}"
            )
        assert self._ready is not None
        if self._ready.is_set():
            return True
        await wait_within(self._ready.wait(), timeout)
        return self._ready.is_set()

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _listen(self) -> None:
        redis = require("redis", "redis")
        assert self._ready is not None
        delay = _RESUBSCRIBE_DELAY[0]
        channel = (self._connection.prefix + self._channel).encode()
        while True:
            pubsub = self._connection.client.pubsub()
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == b"message" or kind == "message":
                        try:
                            self._on_message(message["data"])
                        except Exception:  # a malformed message must not end the listening
                            log.warning("bad message on %s", channel, exc_info=True)
                            self._on_ready()  # waiters look again for themselves
                    elif kind in (b"subscribe", "subscribe"):
                        delay = _RESUBSCRIBE_DELAY[0]
                        self._ready.set()
                        self._on_ready()
            except (redis.RedisError, OSError) as exc:
                log.debug("Redis subscription to %s lost (%s); resubscribing", channel, exc)
            finally:
                self._ready.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESUBSCRIBE_DELAY[1])


_TIMED_OUT = object()


async def wait_future(future: asyncio.Future[Any], timeout: float | None) -> Any:
    """Wait for ``future`` up to ``timeout`` seconds; its result, or None on timeout.

    A timer resolves the future itself (no task, no ``asyncio.wait``): waking a waiter then
    takes one pass of the event loop.
    """
    if timeout is None:
        return await future
    handle = asyncio.get_running_loop().call_later(max(timeout, 0.0), _expire, future)
    try:
        result = await future
    finally:
        handle.cancel()
    return None if result is _TIMED_OUT else result


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


class Waiters:
    """Futures waiting for news by key, all on the loop of their component's client.

    (Like :mod:`omniq._notify` but without the thread hop: the listener that wakes them runs on
    the same loop, so a wake-up costs no self-pipe write.)
    """

    def __init__(self) -> None:
        self._waiting: dict[Any, set[asyncio.Future[Any]]] = {}

    def future(self, key: Any = None) -> asyncio.Future[Any]:
        """A future resolved by the next :meth:`wake` of ``key`` or :meth:`wake_all`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        future.add_done_callback(functools.partial(self._discard, key))
        return future

    def wake(self, key: Any, value: Any = None) -> None:
        for future in self._waiting.pop(key, ()):
            if not future.done():
                future.set_result(value)

    def wake_all(self, value: Any = None) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(value)

    def _discard(self, key: Any, future: asyncio.Future[Any]) -> None:
        futures = self._waiting.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiting[key]


class LocalPeers:
    """Components of this process that use the same server and project, by kind.

    A writer tells them its news directly (a method call on their loop) besides publishing it:
    a waiter in the same process then needs no round trip through the server's pub/sub.
    """

    _lock = threading.Lock()
    _groups: dict[tuple[Any, ...], weakref.WeakSet[Any]] = {}

    @classmethod
    def forget_all(cls) -> None:
        """After ``fork``: the child starts with no peers (and a lock nobody holds)."""
        cls._lock = threading.Lock()
        cls._groups = {}

    @classmethod
    def join(cls, key: tuple[Any, ...], component: Any) -> None:
        """Add a component (with a ``_loop`` attribute: the loop its client runs on)."""
        with cls._lock:
            cls._groups.setdefault(key, weakref.WeakSet()).add(component)

    @classmethod
    def tell(cls, key: tuple[Any, ...], method: str, *args: Any) -> bool:
        """Call ``method(*args)`` on each member, on its own loop; True if one was on this
        loop (the caller may then yield once, so that the woken run before it goes on)."""
        with cls._lock:
            members = list(cls._groups.get(key, ()))
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        here = False
        for member in members:
            loop = member._loop
            if loop is None or loop.is_closed():
                continue
            if loop is current:
                getattr(member, method)(*args)
                here = True
            else:
                loop.call_soon_threadsafe(getattr(member, method), *args)
        return here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LocalPeers.forget_all)


class Connected:
    """Mixin of the Redis components: the connection (``_conn``) and key prefix of the project
    (set ``project_name`` before ``_connect``), the waiters woken by its subscription, and its
    place among the process's peers (``_peers``, ``_loop``: see :class:`LocalPeers`)."""

    project_name: str

    def _connect(self, role: str, **connection: Unpack[RedisConnection]) -> None:
        self._conn = Connection(self.project_name, client_options(**connection))
        self._prefix = self._conn.prefix
        self._waiters = Waiters()
        self._peers = (role, *self._conn.identity)
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._conn.describe()} project={self.project_name!r}>"
