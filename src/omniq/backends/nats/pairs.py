"""What a task queue object knows about its project's (named queue, priority band) pairs: which
may hold a deliverable message, what its waiting long-polls brought, when delayed messages come
due, and the wake-ups that tell it.

Waking: an idle worker leaves one lingering pull request (``expires`` = its wait) on the consumer
of every pair it watches: JetStream hands the next deliverable message of the pair (a new task, a
delay or a lease that ended) straight to it, and the message is kept here ("stashed") for the
claim that follows at once. A stashed message the next claim does not use is handed back after
``STASH_S``. The server drops lingering requests whose inbox lost its subscriber, so closing a
queue strands nothing. Pairs the worker does not know yet are announced by wake-up messages.

Pulling: a pair is pulled when something says it may have a message (a delivery, a wake-up, a
due delay) or when it was last pulled more than ``SWEEP_S`` ago; a pull that finds it empty marks
it quiet. So a claim costs one pull per non-empty band in steady state, and anything nothing
announced is found within ``SWEEP_S`` by the next claim. A busy claimer prefetches: when at most
one claim's worth is stashed, it pulls up to ``PREFETCH_CLAIMS`` claims' worth, the pull request
leaving in the same write as that claim's compare-and-sets (a claim is then one round trip, and
a pull serves several claims).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from omniq._notify import Signal
from omniq.backends.nats.client import Client, ConsumerGone
from omniq.backends.nats.layout import (
    QUEUES_BUCKET,
    TASKS_BUCKET,
    bucket_stream,
    consumer_name,
    kv_subject,
    token,
    wake_subject,
)
from omniq.errors import StorageError

__all__ = [
    "PREFETCH_CLAIMS",
    "SWEEP_S",
    "TASKS_STREAM",
    "Pair",
    "PairBook",
    "Poller",
    "wake_payload",
]

logger = logging.getLogger("omniq.nats")

TASKS_STREAM = bucket_stream(TASKS_BUCKET)
_INACTIVE_NS = 7 * 86400 * 1_000_000_000  # unused consumers go away (re-created on use)

SWEEP_S = 1.0  # pull a quiet pair at least this often (finds what nothing announced)
STASH_S = 0.05  # a delivery (long-poll, prefetch) no claim took by then goes back to the stream
PREFETCH_CLAIMS = 4  # a busy claimer's prefetch holds up to this many claims' worth
DUE_SLACK_S = 0.005  # wake this long after a delay ends (the server's timer fires within ~2 ms)

_decode_wake = msgspec.msgpack.Decoder(list[tuple[str, int, float]]).decode
_encode = msgspec.msgpack.encode


@dataclass(slots=True)
class Pair:
    """One durable consumer: a named queue's priority band."""

    queue: str
    band: int
    consumer: str
    filter: str
    index: int
    news: int = 1  # bumped whenever the pair may have got a deliverable message
    quiet_at: int = 0  # the value of ``news`` when a pull last found the pair empty
    pulled_at: float = -math.inf  # monotonic time of the last pull
    lingering_until: float = -math.inf  # loop time when our long-poll on it expires
    stash: list[tuple[float, Any]] = field(default_factory=list)  # (arrival, message)
    prefetch: asyncio.Future[None] | None = None  # a pull filling the stash for the next claim

    def worth_pulling(self, now: float) -> bool:
        return self.news != self.quiet_at or now - self.pulled_at > SWEEP_S


class PairBook:
    """The pairs of one project, long-poll deliveries, due times and wake-up news."""

    def __init__(
        self, project_token: str, hand_back: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        self.project_token = project_token
        self.pairs: dict[tuple[str, int], Pair] = {}
        self.signal = Signal()
        self.loaded_at = -math.inf
        self._by_token: dict[tuple[str, int], Pair] = {}
        self._by_index: list[Pair] = []
        self._hand_back = hand_back
        self._hints: list[tuple[float, str, int]] = []  # (due epoch, queue, band) heap
        self._news = 0
        self._queue_news: dict[str, int] = {}
        self._seen = 0
        self._stale_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    def pair(self, queue: str, band_no: int) -> Pair:
        pair = self.pairs.get((queue, band_no))
        if pair is None:
            q = token(queue)
            pair = Pair(
                queue,
                band_no,
                consumer_name(self.project_token, q, band_no),
                kv_subject(TASKS_BUCKET, f"{self.project_token}.*.{q}.p{band_no}"),
                len(self._by_index),
            )
            self.pairs[(queue, band_no)] = self._by_token[(q, band_no)] = pair
            self._by_index.append(pair)
        return pair

    def ordered(self, queues: Sequence[str] | None) -> list[Pair]:
        """Pairs in claim order: queue position (all alike when None), then band descending."""
        if queues is None:
            return sorted(self.pairs.values(), key=lambda p: (-p.band, p.queue))
        position = {name: i for i, name in enumerate(dict.fromkeys(queues))}
        chosen = [p for p in self.pairs.values() if p.queue in position]
        return sorted(chosen, key=lambda p: (position[p.queue], -p.band))

    # --- news --------------------------------------------------------------------------------

    def start_claim(self) -> None:
        """Note the news seen by a claim, and mark pairs whose delayed messages came due."""
        self._seen = self._news
        now = time.time()
        hints = self._hints
        while hints and hints[0][0] <= now:
            _, queue, band_no = heapq.heappop(hints)
            self.pair(queue, band_no).news += 1

    def _note(self, pair: Pair) -> None:
        self._news += 1
        self._queue_news[pair.queue] = self._news
        pair.news += 1

    def hint(self, queue: str, band_no: int, due: float) -> None:
        """A message of the pair becomes deliverable at ``due`` (epoch seconds)."""
        entry = (due, queue, band_no)
        if entry not in self._hints:
            heapq.heappush(self._hints, entry)
            if len(self._hints) > 10_000:  # a bound; a dropped hint is found by a sweep
                self._hints = heapq.nsmallest(5_000, self._hints)
                heapq.heapify(self._hints)

    def announce(self, items: Iterable[tuple[str, int, float]]) -> None:
        """Take in wake-up news: (queue, band, due epoch; 0 = now). A pair our long-poll waits
        on needs no news: the message itself will come (to us or to another waiting worker)."""
        now = time.time()
        loop_now = asyncio.get_running_loop().time()
        for queue, band_no, due in items:
            pair = self.pair(queue, band_no)
            if due > now:
                self.hint(queue, band_no, due)
            elif pair.lingering_until <= loop_now:
                self._note(pair)
        self.signal.notify()

    async def on_wake(self, msg: Any) -> None:
        """Core-NATS subscription callback of the project's wake subject."""
        try:
            items = _decode_wake(msg.data)
        except msgspec.DecodeError:
            return
        self.announce(items)

    def has_news(self, queues: Sequence[str] | None) -> bool:
        if queues is None:
            return self._news > self._seen
        return any(self._queue_news.get(q, 0) > self._seen for q in queues)

    def next_due(self, queues: Sequence[str] | None) -> float | None:
        """When the next known delayed message of ``queues`` comes due (epoch), plus slack."""
        for due, queue, _ in sorted(self._hints):
            if queues is None or queue in queues:
                return due + DUE_SLACK_S
        return None

    # --- long-polls --------------------------------------------------------------------------

    def to_linger(self, queues: Sequence[str] | None, now: float) -> list[Pair]:
        """Watched pairs without a live long-poll of ours."""
        return [p for p in self.ordered(queues) if p.lingering_until <= now]

    async def on_delivery(self, msg: Any) -> None:
        """Subscription callback of the long-poll inbox (``<inbox>.<pair index>``)."""
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None and not msg.data:
            if status != "100":  # the long-poll ended (expired, or the consumer went away)
                index = msg.subject.rsplit(".", 1)[-1]
                if index.isdigit() and int(index) < len(self._by_index):
                    self._by_index[int(index)].lingering_until = -math.inf
            return
        # A delivery carries the task key's subject: "$KV.<bucket>.<p>.<id>.<q>.p<band>".
        _, _, q, band_part = msg.subject.rsplit(".", 3)
        pair = self._by_token.get((q, int(band_part[1:])))
        if pair is None:
            self._spawn(self._hand_back([msg]))
            return
        pair.lingering_until = -math.inf
        self.stash(pair, [msg])
        self._note(pair)
        self.signal.notify()

    def stash(self, pair: Pair, msgs: list[Any]) -> None:
        """Keep delivered messages for the next claim (handed back after ``STASH_S``)."""
        if not msgs:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        pair.stash += [(now, msg) for msg in msgs]
        if self._stale_timer is None:
            self._stale_timer = loop.call_later(STASH_S, self._hand_back_stale)

    def shared_bands(self) -> dict[int, list[Pair]]:
        """The bands that several queues use, each with its pairs in :meth:`ordered` order."""
        bands: dict[int, list[Pair]] = {}
        for pair in self.ordered(None):
            bands.setdefault(pair.band, []).append(pair)
        return {b: pairs for b, pairs in bands.items() if len(pairs) > 1}

    def put_back(self, pair: Pair, msgs: list[Any]) -> None:
        """Return messages a claim took but did not use to the front of the pair's stash."""
        if msgs:
            self.stash(pair, msgs)
            pair.stash[:0] = pair.stash[-len(msgs) :]
            del pair.stash[-len(msgs) :]

    def take(self, pair: Pair, limit: int) -> list[Any]:
        """Up to ``limit`` stashed messages of the pair, oldest first."""
        taken, pair.stash = pair.stash[:limit], pair.stash[limit:]
        return [msg for _, msg in taken]

    def _hand_back_stale(self) -> None:
        self._stale_timer = None
        loop = asyncio.get_running_loop()
        stale, oldest_left = [], math.inf
        for pair in self.pairs.values():
            keep = []
            for arrived, msg in pair.stash:
                if loop.time() - arrived >= STASH_S:
                    stale.append(msg)
                else:
                    keep.append((arrived, msg))
                    oldest_left = min(oldest_left, arrived)
            pair.stash = keep
        if stale:
            self._spawn(self._hand_back(stale))
        if oldest_left < math.inf:
            delay = max(oldest_left + STASH_S - loop.time(), 0.001)
            self._stale_timer = loop.call_later(delay, self._hand_back_stale)

    def drain_stash(self) -> list[Any]:
        """Every stashed message (closing)."""
        msgs = []
        for pair in self.pairs.values():
            msgs += [msg for _, msg in pair.stash]
            pair.stash = []
            pair.lingering_until = -math.inf
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        return msgs

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def wake_payload(items: Iterable[tuple[str, int, float]]) -> bytes:
    """One wake-up message: the earliest due time per (queue, band)."""
    earliest: dict[tuple[str, int], float] = {}
    for queue, band_no, due in items:
        key = (queue, band_no)
        earliest[key] = min(earliest.get(key, due), due)
    return _encode([(q, b, due) for (q, b), due in earliest.items()])


class Poller:
    """One task queue object's waiting machinery: its pair book, the wake-up and long-poll
    subscriptions, the (queue, band) registry and the consumers."""

    def __init__(self, project_token: str, project_name: str, ack_wait: float) -> None:
        self.project_token = project_token
        self.project_name = project_name
        self.ack_wait = ack_wait
        self.book = PairBook(project_token, self._hand_back)
        self._client: Client | None = None
        self._wake_sub: Any = None
        self._poll_sub: Any = None
        self._poll_inbox = ""
        self._registered: set[tuple[str, int]] = set()

    async def subscribe(self, client: Client) -> None:
        """Start listening for wake-ups and long-poll deliveries (once)."""
        self._client = client
        if self._wake_sub is None:
            self._wake_sub = await client.subscribe(
                wake_subject(self.project_token), self.book.on_wake
            )
        if self._poll_sub is None:
            inbox = client.new_inbox()
            self._poll_sub = await client.subscribe(f"{inbox}.*", self.book.on_delivery)
            self._poll_inbox = inbox

    async def close(self) -> None:
        # A pull in flight still delivers to us: let it land, then hand everything back.
        pending = [p.prefetch for p in self.book.pairs.values() if p.prefetch is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        stashed = self.book.drain_stash()
        if stashed:
            await self._hand_back(stashed)
        for sub in (self._wake_sub, self._poll_sub):
            if sub is not None:
                try:
                    await sub.unsubscribe()  # the server then drops our long-polls too
                except Exception:  # the connection may be gone already: nothing to undo
                    logger.debug("unsubscribing failed", exc_info=True)
        self._wake_sub = self._poll_sub = None
        self._client = None

    async def linger(self, client: Client, queues: Sequence[str] | None, timeout: float) -> None:
        """Leave a long-poll (a pull request that waits up to ``timeout``) on each watched pair
        that has none: the next message of the pair comes straight to this object."""
        if timeout < 0.01:
            return
        loop = asyncio.get_running_loop()
        body = msgspec.json.encode({"batch": 1, "expires": int(timeout * 1_000_000_000)})
        for pair in self.book.to_linger(queues, loop.time()):
            try:
                await self.ensure_consumer(client, pair)
            except StorageError:
                continue  # the next claim reports it
            pair.lingering_until = loop.time() + timeout
            await client.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{TASKS_STREAM}.{pair.consumer}",
                body,
                reply=f"{self._poll_inbox}.{pair.index}",
            )

    async def _hand_back(self, msgs: list[Any]) -> None:
        """Return long-poll deliveries no claim took to the stream, for any worker."""
        client = self._client
        if client is not None:
            for msg in msgs:
                await client.nak(msg)

    async def pull(self, client: Client, pair: Pair, wanted: int) -> list[Any]:
        """Up to ``wanted`` messages of the pair now; marks it quiet when it has no more."""
        news = pair.news
        try:
            await self.ensure_consumer(client, pair)
            msgs = await client.pull(TASKS_STREAM, pair.consumer, wanted)
        except ConsumerGone:
            return []  # deleted while unused: created again on the next pull
        pair.pulled_at = asyncio.get_running_loop().time()
        if len(msgs) < wanted and pair.news == news:
            pair.quiet_at = news
        return msgs

    async def prefetch(self, client: Client, pair: Pair, count: int) -> None:
        try:
            self.book.stash(pair, await self.pull(client, pair, count))
        except StorageError:
            logger.debug("prefetching from %s failed", pair.consumer, exc_info=True)
        finally:
            pair.prefetch = None

    async def register(self, client: Client, pairs: set[tuple[str, int]]) -> None:
        """Record (queue, band) pairs in the project's registry (once per object)."""
        new = pairs - self._registered
        if not new:
            return
        for queue, band_no in new:
            self.book.pair(queue, band_no)

        async def register(queue: str, band_no: int) -> None:
            value = msgspec.json.encode({"queue": queue, "band": band_no})
            key = f"{self.project_token}.{token(queue)}.p{band_no}"
            await client.kv_write(QUEUES_BUCKET, key, value)

        await asyncio.gather(*(register(q, b) for q, b in new))
        self._registered |= new

    async def load(self, client: Client, max_age: float) -> None:
        """Read the registry if the last read is older than ``max_age`` seconds."""
        book = self.book
        now = asyncio.get_running_loop().time()
        if now - book.loaded_at <= max_age:
            return
        book.loaded_at = now
        for entry in await client.kv_scan(QUEUES_BUCKET, f"{self.project_token}.>"):
            data = msgspec.json.decode(entry.value)
            pair = (data["queue"], int(data["band"]))
            book.pair(*pair)
            self._registered.add(pair)

    async def ensure_consumer(self, client: Client, pair: Pair) -> None:
        await client.ensure_consumer(
            TASKS_STREAM,
            {
                "durable_name": pair.consumer,
                "name": pair.consumer,
                "description": f"omniq {self.project_name} / {pair.queue} / band {pair.band}",
                "deliver_policy": "all",
                "ack_policy": "explicit",
                "ack_wait": int(self.ack_wait * 1_000_000_000),
                "max_deliver": -1,
                "filter_subject": pair.filter,
                "replay_policy": "instant",
                "max_ack_pending": -1,
                "inactive_threshold": _INACTIVE_NS,
            },
        )
