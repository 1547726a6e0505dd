"""One NATS connection per (process, event loop, server list), shared by every OmniQ component
that uses it, and the few JetStream calls OmniQ makes (raw requests: no per-call consumer set-up).

A claim's pulls are ``no_wait`` requests (``$JS.API.CONSUMER.MSG.NEXT``), answered at once; only
an idle worker leaves lingering pulls (long-polls, see :mod:`.pairs`). Many requests
are sent at once by :meth:`Client.requests`, one timer for the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
from collections.abc import Sequence
from typing import Any

import msgspec

from omniq._redact import redact
from omniq.backends.nats.kv import (
    ApiError,
    CasConflict,
    ConsumerGone,
    Entry,
    KeyValueOps,
    Write,
    delivery_info,
)
from omniq.errors import StorageError, require

__all__ = [
    "ApiError",
    "CasConflict",
    "Client",
    "ConsumerGone",
    "Entry",
    "Write",
    "acquire",
    "delivery_info",
]

logger = logging.getLogger("omniq.nats")

REQUEST_TIMEOUT = 5.0
_STREAM_NOT_FOUND, _STREAM_IN_USE = 10059, 10058
_CONSUMER_EXISTS = frozenset({10013, 10105, 10148})


class _Inbox:
    """A consumer's pull inbox in this client (a callback subscription kept between pulls), the
    lock its pulls take turns on, and what the pull in progress has collected."""

    __slots__ = ("done", "lock", "msgs", "status", "sub", "subject", "wanted")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.sub: Any = None
        self.subject = ""
        self.msgs: list[Any] = []
        self.wanted = 0
        self.status: tuple[str, str] | None = None
        self.done: asyncio.Future[None] | None = None

    async def on_msg(self, msg: Any) -> None:
        """Subscription callback: a delivery, or the status message that ends a pull."""
        done = self.done
        headers = msg.headers
        code = headers.get("Status") if headers else None
        if code is not None and not msg.data:
            if code != "100" and done is not None and not done.done():  # not a heartbeat
                self.status = (code, str(headers.get("Description", "")))
                done.set_result(None)
            return
        if done is None or done.done():
            # No pull waits for it (its pull gave up): hand it back at once.
            with contextlib.suppress(Exception):
                await msg.respond(b"-NAK")
            return
        self.msgs.append(msg)
        if len(self.msgs) >= self.wanted:
            done.set_result(None)

    async def drop(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class _Batch:
    """Replies of one :meth:`Client.requests` call."""

    __slots__ = ("done", "left", "replies")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.left = size
        self.done = done
        self.replies: list[Any] = [None] * size


_json = msgspec.json.encode


class Client(KeyValueOps):
    """A lazily connected NATS client with OmniQ's JetStream calls."""

    def __init__(self, servers: list[str], options: dict[str, Any], key: tuple[Any, ...]) -> None:
        self.servers = servers
        self.loop = asyncio.get_running_loop()
        self._options = options
        self._key = key
        self.refs = 0
        self._nc: Any = None
        self._lock = asyncio.Lock()
        self._ready: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._replies: dict[str, tuple[_Batch, int]] = {}
        self._pull_inboxes: dict[str, _Inbox] = {}
        self._reply_prefix = ""
        self._batches = itertools.count()

    def describe(self) -> str:
        """The servers, passwords and tokens masked."""
        return redact(",".join(self.servers))

    # --- connection --------------------------------------------------------------------------

    async def nc(self) -> Any:
        """The connected ``nats.aio.client.Client``."""
        nc = self._nc
        if nc is not None and not nc.is_closed:
            return nc
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await self._connect()
        return self._nc

    async def _connect(self) -> Any:
        nats = _driver()
        options = {
            "name": "omniq",
            "connect_timeout": 5,
            "reconnect_time_wait": 0.5,
            "error_cb": self._log_error,
            "disconnected_cb": _log_disconnected,
            "reconnected_cb": _log_reconnected,
            **self._options,
        }
        accepted = inspect.signature(nats.aio.client.Client.connect).parameters
        if "skip_subject_validation" in accepted:  # not in older nats-py releases
            # Every subject is built from escaped tokens: nothing to validate per message.
            options.setdefault("skip_subject_validation", True)
        reconnects = options.pop("max_reconnect_attempts", -1)
        try:
            # The first connection tries each server twice and fails; once connected, reconnects
            # go on (forever by default) and publishes are buffered meanwhile.
            nc = await nats.connect(
                servers=self.servers, allow_reconnect=True, max_reconnect_attempts=1, **options
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise StorageError(
                f"cannot connect to NATS at {self.describe()}: {redact(repr(exc))}"
            ) from exc
        nc.options["max_reconnect_attempts"] = reconnects
        self._reply_prefix = nc.new_inbox()
        await nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_reply)
        return nc

    async def _log_error(self, exc: Exception) -> None:
        if self._nc is None:
            logger.debug("connecting to NATS at %s: %s", self.describe(), redact(repr(exc)))
        else:
            logger.warning("NATS connection error: %s", redact(repr(exc)))

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pull_inboxes.clear()
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.drain()
        self._ready.clear()

    async def release(self) -> None:
        """Drop one reference; the last one closes the connection."""
        self.refs -= 1
        if self.refs <= 0:
            if _clients.get(self._key) is self:
                del _clients[self._key]
            await self.close()

    # --- plain requests ----------------------------------------------------------------------

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        nc = await self.nc()
        nats = _driver()
        try:
            return await nc.request(subject, payload, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError as exc:
            raise StorageError(
                f"NATS at {self.describe()}: nothing answers on {subject!r} (JetStream disabled, "
                "or its stream missing?)"
            ) from exc
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise StorageError(f"NATS at {self.describe()}: {subject}: {exc!r}") from exc

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        headers: dict[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Fire and forget (core NATS)."""
        nc = await self.nc()
        nats = _driver()
        try:
            await nc.publish(subject, payload, reply=reply, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            raise StorageError(f"NATS at {self.describe()}: publish {subject}: {exc!r}") from exc

    def new_inbox(self) -> str:
        assert self._nc is not None
        return str(self._nc.new_inbox())

    async def subscribe(self, subject: str, cb: Any) -> Any:
        nc = await self.nc()
        sub = await nc.subscribe(subject, cb=cb)
        await nc.flush()  # the server knows the subscription before we look at the state
        return sub

    async def api(self, subject: str, body: Any = None) -> dict[str, Any]:
        """A JetStream API call (``$JS.API.<subject>``); errors raise :class:`ApiError`."""
        msg = await self.request(f"$JS.API.{subject}", b"" if body is None else _json(body))
        response = msgspec.json.decode(msg.data)
        if "error" in response:
            raise ApiError(response["error"], subject)
        return response

    # --- set-up ------------------------------------------------------------------------------

    async def ensure_stream(self, config: dict[str, Any]) -> None:
        """Create the stream unless it exists (an existing one is used as it is)."""
        name = config["name"]
        if name in self._ready:
            return
        try:
            await self.api(f"STREAM.INFO.{name}")
        except ApiError as exc:
            if exc.err_code != _STREAM_NOT_FOUND:
                raise
            try:
                await self.api(f"STREAM.CREATE.{name}", config)
            except ApiError as again:
                if again.err_code != _STREAM_IN_USE:
                    raise
        self._ready.add(name)

    async def ensure_consumer(self, stream: str, config: dict[str, Any]) -> None:
        """Create a durable consumer unless it exists."""
        name = config["durable_name"]
        marker = f"{stream}/{name}"
        if marker in self._ready:
            return
        try:
            await self.api(
                f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config}
            )
        except ApiError as exc:
            if exc.err_code not in _CONSUMER_EXISTS:
                raise
        self._ready.add(marker)

    def forget_consumer(self, stream: str, name: str) -> None:
        self._ready.discard(f"{stream}/{name}")

    async def requests(
        self, items: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> list[Any]:
        """Send many requests at once and wait for all replies (one timer for the batch, not
        one per request as ``nc.request`` has); returns the reply messages in order."""
        if not items:
            return []
        nc = await self.nc()
        nats = _driver()
        batch = _Batch(len(items), self.loop.create_future())
        prefix = f"{self._reply_prefix}.{next(self._batches)}_"
        tokens = []
        try:
            for i, (subject, payload, headers) in enumerate(items):
                token = f"{prefix}{i}"
                tokens.append(token)
                self._replies[token] = (batch, i)
                await nc.publish(subject, payload, reply=token, headers=headers)
            await _within(batch.done, REQUEST_TIMEOUT)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise StorageError(
                f"NATS at {self.describe()}: {len(items)} requests: {exc!r}"
            ) from exc
        finally:
            for token in tokens:
                self._replies.pop(token, None)
        return batch.replies

    async def _on_reply(self, msg: Any) -> None:
        entry = self._replies.pop(msg.subject, None)
        if entry is None:
            return  # a reply after its batch gave up
        batch, index = entry
        batch.replies[index] = msg
        batch.left -= 1
        if batch.left == 0 and not batch.done.done():
            batch.done.set_result(None)

    # --- pull consumers ----------------------------------------------------------------------

    async def pull(
        self, stream: str, consumer: str, batch: int, timeout: float = REQUEST_TIMEOUT
    ) -> list[Any]:
        """Up to ``batch`` messages available now (``no_wait``); never waits for new ones.

        Deliveries carry the stream's subject, not the inbox, so concurrent pulls cannot share
        an inbox: pulls from one consumer take turns on its inbox (kept between pulls; a
        callback collects each pull's messages), and a pull that times out or is cancelled drops
        it, so nothing late lands in the next pull (a delivery no pull waits for is handed back).
        """
        nc = await self.nc()
        nats = _driver()
        inbox = self._pull_inboxes.get(consumer)
        if inbox is None:
            inbox = self._pull_inboxes[consumer] = _Inbox()
        async with inbox.lock:
            done = inbox.done = self.loop.create_future()
            inbox.msgs, inbox.wanted, inbox.status = [], batch, None
            try:
                if inbox.sub is None:
                    inbox.subject = nc.new_inbox()
                    inbox.sub = await nc.subscribe(inbox.subject, cb=inbox.on_msg)
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    _json({"batch": batch, "no_wait": True}),
                    reply=inbox.subject,
                )
                await _within(done, timeout)
            except TimeoutError:  # before OSError, its base class: keep what came, if anything
                await inbox.drop()
                inbox.status = ("timeout", "")
            except (nats.errors.Error, OSError) as exc:
                await inbox.drop()
                raise StorageError(f"NATS at {self.describe()}: pull {consumer}: {exc!r}") from exc
            except asyncio.CancelledError:
                await inbox.drop()  # the rest of this pull must not land in the next one
                raise
            finally:
                inbox.done = None
            msgs, (status, description) = inbox.msgs, inbox.status or (None, "")
            inbox.msgs = []
        if status == "503" or (status == "409" and "Deleted" in description):
            self.forget_consumer(stream, consumer)
            raise ConsumerGone(f"consumer {consumer} of {stream} is gone: {description}")
        if status == "timeout" and not msgs:
            raise StorageError(f"NATS at {self.describe()}: pull from {consumer} timed out")
        return msgs

    async def release_inbox(self, consumer: str) -> None:
        """Forget a consumer's pull inbox (a scan's consumer, when the scan is done)."""
        inbox = self._pull_inboxes.pop(consumer, None)
        if inbox is not None:
            await inbox.drop()

    async def ack(self, msg: Any) -> None:
        await self._reply(msg, b"+ACK")

    async def nak(self, msg: Any, delay: float = 0.0) -> None:
        if delay <= 0:
            await self._reply(msg, b"-NAK")
        else:
            await self._reply(msg, b'-NAK {"delay": %d}' % int(delay * 1_000_000_000))

    async def _reply(self, msg: Any, body: bytes) -> None:
        nc = await self.nc()
        nats = _driver()
        try:
            await nc.publish(msg.reply, body)
        except (nats.errors.Error, OSError) as exc:
            # The message comes back after its AckWait or delay anyway.
            logger.debug("answering a JetStream message failed: %r", exc)

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _within(future: asyncio.Future[None], timeout: float) -> None:
    """Wait at most ``timeout`` seconds for a future that only this caller awaits: one timer,
    without the wrapping futures of ``asyncio.wait_for`` and ``shield`` (a hot path)."""
    timer = future.get_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


_nats: Any = None


def _driver() -> Any:
    """The ``nats`` package with its ``errors`` module loaded (``omniq[nats]``)."""
    global _nats
    if _nats is None:
        nats = require("nats", "nats")
        require("nats.errors", "nats")
        require("nats.aio.client", "nats")
        _nats = nats
    return _nats


_clients: dict[tuple[Any, ...], Client] = {}


async def acquire(servers: list[str], options: dict[str, Any]) -> Client:
    """This process's and this event loop's client for ``servers`` (one more reference)."""
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop), tuple(servers), repr(sorted(options.items())))
    client = _clients.get(key)
    if client is None or client.loop is not loop:
        client = _clients[key] = Client(servers, options, key)
    client.refs += 1
    return client


async def _log_disconnected() -> None:
    logger.info("disconnected from NATS")


async def _log_reconnected() -> None:
    logger.info("reconnected to NATS")
