"""NATS JetStream specifics beyond the conformance suite: what is stored where, priority bands,
leases as nak delays, wake-ups across connections, result TTLs, keys, and a server restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import taskfns
from claimprobe import ClaimLoop
from conftest import wait_until
from servers.nats import NATSServer

from omniq.backends.nats import TASKS_BUCKET, acquire, bucket_stream, records, waiting
from omniq.backends.nats._twins import NATSResultStorage, NATSTaskQueue
from omniq.backends.nats.layout import KEYS_BUCKET, RECORDS_BUCKET, RESULTS_BUCKET
from omniq.backends.nats.queue import AsyncNATSTaskQueue, NATSTaskQueueConfig
from omniq.backends.nats.storage import AsyncNATSResultStorage
from omniq.errors import ConfigError, StorageError
from omniq.models import Task, TaskResult, TaskStatus, utcnow
from omniq.workers import AsyncWorker


@pytest.fixture
async def queue(nats_server: NATSServer, project: str) -> AsyncIterator[AsyncNATSTaskQueue]:
    q = AsyncNATSTaskQueue(servers=nats_server.url, project_name=project)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def results(nats_server: NATSServer, project: str) -> AsyncIterator[AsyncNATSResultStorage]:
    r = AsyncNATSResultStorage(servers=[nats_server.url], project_name=project)
    try:
        yield r
    finally:
        await r.close()


async def test_buckets_use_file_storage_and_consumers_the_ack_wait(
    nats_server: NATSServer, project: str
) -> None:
    q = AsyncNATSTaskQueue(servers=[nats_server.url], project_name=project, ack_wait=12)
    try:
        await q.enqueue(taskfns.noop, queue_name="mail", priority=3)
        assert [t.queue_name for t in await q.claim("w", queues=["mail"])] == ["mail"]
        client = await acquire([nats_server.url], {})
        try:
            info = await client.api(f"STREAM.INFO.{bucket_stream(TASKS_BUCKET)}")
            assert info["config"]["storage"] == "file"
            assert info["config"]["max_msgs_per_subject"] == 1
            names = await client.api(f"CONSUMER.NAMES.{bucket_stream(TASKS_BUCKET)}")
            found = []
            for name in names["consumers"]:
                consumer = await client.api(f"CONSUMER.INFO.{bucket_stream(TASKS_BUCKET)}.{name}")
                if (
                    consumer["config"]
                    .get("filter_subject", "")
                    .startswith(f"$KV.{TASKS_BUCKET}.{project}.")
                ):
                    found.append(consumer["config"])
        finally:
            await client.release()
        assert len(found) == 1
        assert found[0]["ack_wait"] == 12_000_000_000
        assert found[0]["filter_subject"].endswith(".mail.p3")
    finally:
        await q.close()


async def test_priorities_beyond_the_bands_share_the_outer_band_fifo(
    queue: AsyncNATSTaskQueue,
) -> None:
    first = await queue.enqueue(taskfns.noop, priority=50)
    second = await queue.enqueue(taskfns.noop, priority=100)
    low = await queue.enqueue(taskfns.noop, priority=-30)
    mid = await queue.enqueue(taskfns.noop, priority=-10 + 1)
    claimed = [t.id for t in await queue.claim("w", limit=10)]
    assert claimed == [first, second, mid, low]


async def test_a_lease_is_a_nak_delay_exact_per_claim(queue: AsyncNATSTaskQueue) -> None:
    task_id = await queue.enqueue(taskfns.noop)
    started = time.monotonic()
    (task,) = await queue.claim("w", lease_timeout=0.4)
    assert task.lease_until is not None
    assert await queue.claim("thief") == []  # the thief's pull puts the message back until then
    taken: list[Task] = []

    async def reclaimed() -> bool:
        taken.extend(await queue.claim("thief"))
        return bool(taken)

    await wait_until(reclaimed, timeout=5, interval=0.02)
    assert 0.35 <= time.monotonic() - started < 3.0
    assert taken[0].id == task_id and taken[0].attempts == 2


async def test_idle_worker_wakes_on_an_enqueue_from_another_connection(
    nats_server: NATSServer, project: str
) -> None:
    consumer = AsyncNATSTaskQueue(servers=[nats_server.url], project_name=project)
    producer = AsyncNATSTaskQueue(
        servers=[nats_server.url], project_name=project, connect_options={"name": "producer"}
    )
    results = AsyncNATSResultStorage(
        servers=[nats_server.url], project_name=project, connect_options={"name": "reader"}
    )
    worker = AsyncWorker(queue=consumer, result_store=results, poll_interval=30)
    claim_loop = ClaimLoop(worker)
    try:
        await producer.enqueue(taskfns.noop, queue_name="other")  # a pair the worker knows
        async with worker:
            await wait_until(lambda: worker.processed == 1, timeout=10)
            # Idle after that task, waiting up to poll_interval (30 s): only the enqueue's
            # wake-up can bring the next task in time.
            await wait_until(lambda: claim_loop.idle(finished=1), timeout=10)
            started = time.perf_counter()
            task_id = await producer.enqueue(taskfns.add, args=(2, 3), queue_name="fresh")
            assert (await results.get(task_id, wait=True, timeout=10)).unwrap() == 5
            assert time.perf_counter() - started < 1.0
    finally:
        for component in (consumer, producer, results):
            await component.close()


async def test_a_new_queue_object_finds_queues_it_never_heard_of(
    nats_server: NATSServer, project: str, queue: AsyncNATSTaskQueue
) -> None:
    task_id = await queue.enqueue(taskfns.noop, queue_name="reports", priority=2)
    newcomer = AsyncNATSTaskQueue(
        servers=[nats_server.url], project_name=project, connect_options={"name": "newcomer"}
    )
    try:
        assert [t.id for t in await newcomer.claim("w", queues=["reports"])] == [task_id]
    finally:
        await newcomer.close()


async def test_concurrent_keyed_enqueues_agree_on_one_task(
    nats_server: NATSServer, project: str
) -> None:
    queues = [
        AsyncNATSTaskQueue(
            servers=[nats_server.url], project_name=project, connect_options={"name": f"c{i}"}
        )
        for i in range(4)
    ]
    try:
        ids = await asyncio.gather(
            *(queues[i % 4].enqueue(taskfns.noop, key="nightly") for i in range(12))
        )
        assert len(set(ids)) == 1
        assert await queues[0].count() == 1
    finally:
        for q in queues:
            await q.close()


async def test_a_keyed_enqueue_that_died_half_way_is_completed(
    nats_server: NATSServer, queue: AsyncNATSTaskQueue
) -> None:
    # The key was taken but the task never stored (the enqueuing process died in between).
    orphan = queue.build_task(taskfns.noop, key="once")
    client = await acquire([nats_server.url], {})
    try:
        encoded = msgspec.msgpack.encode(orphan)
        entry = msgspec.msgpack.encode((queue._key(orphan), encoded, time.time()))
        await client.kv_write(KEYS_BUCKET, f"{queue._p}.once", entry)
    finally:
        await client.release()
    assert await queue.get_task(orphan.id) is None
    assert await queue.enqueue(taskfns.noop, key="once") == orphan.id
    assert (await queue.get_task(orphan.id)).status is TaskStatus.PENDING


async def test_purge_drops_the_keys_of_purged_tasks(queue: AsyncNATSTaskQueue) -> None:
    first = await queue.enqueue(taskfns.noop, key="k")
    assert await queue.purge() == 1
    second = await queue.enqueue(taskfns.noop, key="k")
    assert second != first and await queue.get_task(first) is None
    assert await queue.count() == 1


async def test_requeue_refuses_a_key_held_by_another_live_task(queue: AsyncNATSTaskQueue) -> None:
    first = await queue.enqueue(taskfns.noop, key="k")
    assert await queue.cancel(first)
    second = await queue.enqueue(taskfns.noop, key="k")
    assert second != first
    with pytest.raises(StorageError, match="idempotency key"):
        await queue.requeue(first)
    assert await queue.cancel(second)
    assert await queue.requeue(first)
    assert await queue.enqueue(taskfns.noop, key="k") == first


async def test_results_expire_on_the_server(
    nats_server: NATSServer, results: AsyncNATSResultStorage
) -> None:
    now = utcnow()
    short = TaskResult(task_id="short", status=TaskStatus.SUCCESS, value=1,
                       expires_at=now + timedelta(seconds=1))  # fmt: skip
    kept = TaskResult(task_id="kept", status=TaskStatus.SUCCESS, value=2)
    await results.put_many([short, kept])
    assert (await results.get("short")).value == 1
    client = await acquire([nats_server.url], {})
    try:
        key = f"{results._p}.short"

        async def gone() -> bool:
            return await client.kv_get(RESULTS_BUCKET, key) is None

        await wait_until(gone, timeout=10, interval=0.1)  # removed by the server, not by reads
    finally:
        await client.release()
    assert await results.cleanup_expired() == 0
    assert (await results.get("kept")).value == 2
    assert await results.delete("kept") is True
    assert await results.delete("kept") is False


async def test_result_wait_is_woken_by_a_write_from_another_connection(
    nats_server: NATSServer, project: str, results: AsyncNATSResultStorage
) -> None:
    writer = AsyncNATSResultStorage(
        servers=[nats_server.url], project_name=project, connect_options={"name": "writer"}
    )
    try:
        waiter = asyncio.ensure_future(results.get("t1", wait=True, timeout=10))
        # The waiter is watching (its key registered right before it looks, watch started).
        await wait_until(lambda: bool(results._waiting), timeout=10)
        started = time.perf_counter()
        await writer.put(TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value="v"))
        assert (await waiter).value == "v"
        assert time.perf_counter() - started < 0.5  # the watch, not the 5 s safety re-check
    finally:
        await writer.close()


async def test_tasks_and_results_survive_a_server_restart(project: str) -> None:
    server = NATSServer()
    server.start()
    try:
        q = AsyncNATSTaskQueue(servers=[server.url], project_name=project)
        r = AsyncNATSResultStorage(servers=[server.url], project_name=project)
        pending = await q.enqueue(taskfns.noop, queue_name="q", priority=1)
        await r.put(TaskResult(task_id="done", status=TaskStatus.SUCCESS, value=7))
        server.stop()
        server.start()  # same port and store directory: the client reconnects by itself

        async def readable() -> bool:
            try:
                return await q.get_task(pending) is not None
            except StorageError:
                return False

        await wait_until(readable, timeout=20, interval=0.2)
        assert (await r.get("done")).value == 7
        assert [t.id for t in await q.claim("w", queues=["q"])] == [pending]
        await q.close()
        await r.close()
    finally:
        server.destroy()


async def test_unreachable_server_is_a_storage_error(project: str) -> None:
    q = AsyncNATSTaskQueue(servers=["nats://127.0.0.1:1"], project_name=project)
    started = time.perf_counter()
    with pytest.raises(StorageError, match="cannot connect to NATS"):
        await q.count()
    assert time.perf_counter() - started < 10
    await q.close()


def test_sync_twins_and_configuration(nats_server: NATSServer, project: str) -> None:
    config = NATSTaskQueueConfig(project_name=project, servers=nats_server.url, queues=["a"])
    with (
        NATSTaskQueue.from_config(config) as q,
        NATSResultStorage(servers=[nats_server.url], project_name=project) as r,
    ):
        task_id = q.enqueue(taskfns.noop, queue_name="a")
        assert q.count(status="pending") == 1
        (task,) = q.claim("w")
        assert task.id == task_id
        r.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=None))
        assert r.get(task_id, wait=True, timeout=5).status is TaskStatus.SUCCESS
    with pytest.raises(ConfigError, match="servers"):
        AsyncNATSTaskQueue(servers=[])


async def test_the_backend_and_urls_build_the_components(
    nats_server: NATSServer, project: str
) -> None:
    from omniq.backend import NATSBackend
    from omniq.urls import parse_url

    kind, options = parse_url(f"{nats_server.url},nats://127.0.0.1:1")
    assert kind == "nats" and options["servers"][0] == nats_server.url
    backend = NATSBackend(project_name=project, servers=[nats_server.url])
    q = backend.task_queue(queues=["high", "low"])
    r = backend.result_store()
    try:
        assert isinstance(q, AsyncNATSTaskQueue) and q.queues == ["high", "low"]
        assert isinstance(r, AsyncNATSResultStorage)
        await q.enqueue(taskfns.noop, queue_name="low")
        assert await q.count(queue_name="low") == 1
    finally:
        await q.close()
        await r.close()
    with pytest.raises(ConfigError, match="no event storage"):
        backend.event_store()


async def test_names_with_subject_characters_are_escaped(
    nats_server: NATSServer, project: str
) -> None:
    from omniq.backends.nats import token

    assert token("plain-name_1") == "plain-name_1"
    assert token("a.b") != token("a=2Eb") and "." not in token("a.b *>")
    odd = AsyncNATSTaskQueue(servers=[nats_server.url], project_name=f"proj.with spaces*{project}")
    try:
        task_id = await odd.enqueue(taskfns.noop, queue_name="mail.high >")
        assert await odd.count(queue_name="mail.high >") == 1
        (task,) = await odd.claim("w", queues=["mail.high >"])
        assert task.id == task_id and task.queue_name == "mail.high >"
        assert await odd.purge() == 0  # running: kept
    finally:
        await odd.close()


async def test_waiting_tasks_are_listed_from_their_index_without_a_scan(
    queue: AsyncNATSTaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = await queue.enqueue(taskfns.noop)
    first = await queue.enqueue(taskfns.noop, depends_on=[parent], queue_name="a")
    (second, third) = await queue.enqueue_many(
        [
            {"func": taskfns.noop, "depends_on": [parent], "queue_name": "b"},
            {"func": taskfns.noop, "depends_on": [parent], "queue_name": "a"},
        ]
    )
    indexed = {key for key, _, _ in await queue.list_records(waiting.KIND)}
    assert indexed == {first, second, third}

    async def no_scan(queue_name: str | None) -> None:
        raise AssertionError("listing WAITING tasks scanned every task")

    monkeypatch.setattr(queue, "_scan", no_scan)
    listed = await queue.list_tasks(status=TaskStatus.WAITING)
    assert [t.id for t in listed] == [first, second, third]
    assert {t.status for t in listed} == {TaskStatus.WAITING}
    assert [t.id for t in await queue.list_tasks("a", TaskStatus.WAITING)] == [first, third]
    assert [t.id for t in await queue.list_tasks(status=TaskStatus.WAITING, limit=1)] == [first]
    monkeypatch.undo()

    assert await queue.cancel(second)  # leaving WAITING drops the entry at once
    assert {key for key, _, _ in await queue.list_records(waiting.KIND)} == {first, third}
    assert await queue.count(status=TaskStatus.WAITING) == 2
    assert [t.id for t in await queue.list_tasks(status=TaskStatus.PENDING)] == [parent]
    assert [t.id for t in await queue.list_tasks(status=TaskStatus.CANCELLED)] == [second]


async def test_stale_waiting_index_entries_are_cleaned_and_missing_ones_added(
    nats_server: NATSServer, queue: AsyncNATSTaskQueue
) -> None:
    parent = await queue.enqueue(taskfns.noop)
    kept = await queue.enqueue(taskfns.noop, depends_on=[parent])
    moved = await queue.enqueue(taskfns.noop, depends_on=[parent])
    young = queue.build_task(taskfns.noop, depends_on=[parent])  # its enqueue is under way
    old = queue.build_task(taskfns.noop, depends_on=[parent])  # its enqueue died long ago
    legacy = queue.build_task(taskfns.noop, depends_on=[parent])  # stored without an entry
    client = await acquire([nats_server.url], {})
    try:
        # ``moved`` left WAITING behind the index's back (its entry stays).
        entry = await client.kv_find(TASKS_BUCKET, f"{queue._p}.{moved}.*.*")
        task = msgspec.msgpack.decode(entry.value, type=Task)
        await client.kv_write(
            TASKS_BUCKET, entry.key, msgspec.msgpack.encode(task.evolve(status="pending"))
        )
        await queue._waiting.add(client, [(queue._key(young), young)])
        stamp = (old.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        aged = [stamp, queue._key(old), time.time() - waiting.ORPHAN_GRACE_S - 1]
        (outcome,) = await client.kv_write_many(
            RECORDS_BUCKET,
            [records.put_write(queue._p, waiting.KIND, old.id, msgspec.msgpack.encode(aged))],
        )
        assert isinstance(outcome, int)
        await client.kv_write(TASKS_BUCKET, queue._key(legacy), msgspec.msgpack.encode(legacy))
    finally:
        await client.release()

    assert [t.id for t in await queue.list_tasks(status=TaskStatus.WAITING)] == [kept]
    indexed = {key for key, _, _ in await queue.list_records(waiting.KIND)}
    assert indexed == {kept, young.id}  # ``moved`` and ``old`` dropped, ``young`` kept

    # The safety net, once due (no scan yet in this project), adds the legacy task's entry.
    assert await queue.delete_record("omniq-index", "waiting")
    queue._waiting._next_check = 0.0
    listed = [t.id for t in await queue.list_tasks(status=TaskStatus.WAITING)]
    assert listed == [kept, legacy.id]
    assert legacy.id in {key for key, _, _ in await queue.list_records(waiting.KIND)}
    assert await queue.count(status=TaskStatus.WAITING) == 2

    # Releasing the WAITING tasks empties the index; purging drops what is left.
    assert await queue.transition(kept, [TaskStatus.WAITING], status=TaskStatus.PENDING)
    assert await queue.purge() == 4  # parent, kept, moved, legacy
    assert await queue.list_tasks(status=TaskStatus.WAITING) == []
    assert {key for key, _, _ in await queue.list_records(waiting.KIND)} == {young.id}
