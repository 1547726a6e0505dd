"""Redis-specific behaviour: key layout, scripts, expiry, wake-ups, notifications, restarts,
error translation, sync twins. The shared contract is in tests/conformance/."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
import taskfns
from conftest import wait_until
from servers.redis import RedisServer, redis_server

from omniq.backends.redis._twins import RedisResultStorage, RedisTaskQueue
from omniq.backends.redis.client import load_script
from omniq.backends.redis.keys import prefix
from omniq.backends.redis.queue import AsyncRedisTaskQueue, RedisTaskQueueConfig
from omniq.backends.redis.storage import (
    INLINE_RESULT_BYTES,
    AsyncRedisResultStorage,
    RedisResultStorageConfig,
)
from omniq.backends.sqlite.storage import AsyncSQLiteEventStorage
from omniq.errors import ConfigError, StorageError
from omniq.models import TaskResult, TaskStatus, utcnow
from omniq.workers import AsyncWorker

# Exported so that pytest (and ruff) see the session server fixture as used by name here.
__all__ = ["redis_server"]


@pytest.fixture
async def queue(redis_server: RedisServer, project: str) -> AsyncIterator[AsyncRedisTaskQueue]:
    q = AsyncRedisTaskQueue(url=redis_server.url, project_name=project)
    yield q
    await q.close()


@pytest.fixture
async def results(
    redis_server: RedisServer, project: str
) -> AsyncIterator[AsyncRedisResultStorage]:
    r = AsyncRedisResultStorage(url=redis_server.url, project_name=project)
    yield r
    await r.close()


async def _keys(queue: AsyncRedisTaskQueue, pattern: str = "*") -> set[str]:
    client = queue._conn.client
    return {k.decode() async for k in client.scan_iter(match=prefix(queue.project_name) + pattern)}


async def test_every_key_carries_the_project_prefix_with_a_hash_tag(
    queue: AsyncRedisTaskQueue, results: AsyncRedisResultStorage, project: str
) -> None:
    await queue.enqueue_many([{"func": taskfns.noop, "key": "k1", "queue_name": "a"}] * 2)
    await queue.enqueue(taskfns.noop, queue_name="a")
    await queue.enqueue(taskfns.noop, run_in=60, queue_name="b")
    (task,) = await queue.claim("w", queues=["a"])
    await results.put(TaskResult(task_id=task.id, status=TaskStatus.SUCCESS, value=1))
    client = queue._conn.client
    mine = {k.decode() async for k in client.scan_iter(match=f"*{project}*")}
    assert mine and all(k.startswith(f"omniq:{{{project}}}:") for k in mine), mine
    # One hash tag for all: Redis Cluster puts every key of the project in one slot.
    assert {k[k.index("{") + 1 : k.index("}")] for k in mine} == {project}
    assert {k.split(":", 2)[2].split(":")[0] for k in mine} >= {
        "t", "seq", "queues", "ready", "delayed", "leases", "idx", "key", "r",
    }  # fmt: skip


def test_each_script_opens_with_a_comment_naming_the_keys_it_touches() -> None:
    package = resources.files("omniq.backends.redis")
    names = [p.name for p in package.iterdir() if p.name.endswith(".lua")]
    assert {"claim.lua", "finish.lua", "insert.lua", "renew.lua"} <= set(names)
    for name in names:
        head = package.joinpath(name).read_text().splitlines()
        assert head[0].startswith("--"), name
        comment = [line for line in head if line.startswith("--")]
        assert any("P.." in line or "KEYS" in line for line in comment), name
    assert "local function schedule" in load_script("claim")  # task scripts get _lib.lua


async def test_claim_recovers_lapsed_leases_and_finish_refuses_stale_claims(
    queue: AsyncRedisTaskQueue,
) -> None:
    task_id = await queue.enqueue(taskfns.noop)
    (first,) = await queue.claim("dead", lease_timeout=0.05)
    await wait_until(lambda: utcnow() > first.lease_until, timeout=5)
    # The lapsed task goes back to its ready set; its old worker can still renew it then.
    assert await queue.renew("dead", [task_id], 30) == {task_id}
    assert await queue.claim("other") == []
    assert await queue.renew("dead", [task_id], 0.05) == {task_id}
    await wait_until(lambda: utcnow() > first.lease_until + timedelta(seconds=0.06), timeout=5)
    (second,) = await queue.claim("other")
    assert second.attempts == 2 and second.worker_id == "other"
    assert await queue.renew("dead", [task_id], 30) == set()
    assert await queue.finish("dead", [first.evolve(status=TaskStatus.SUCCESS)]) == set()
    done = second.evolve(status=TaskStatus.SUCCESS, lease_until=None, finished_at=utcnow())
    assert await queue.finish("other", [done]) == {task_id}
    assert await _keys(queue, "leases") == set()  # nothing leased any more


async def test_idempotency_keys_follow_the_task_life_cycle(queue: AsyncRedisTaskQueue) -> None:
    first = await queue.enqueue(taskfns.noop, key="report")
    assert await queue.enqueue(taskfns.noop, key="report") == first
    assert await queue.cancel(first)
    second = await queue.enqueue(taskfns.noop, key="report")  # a final task frees its key
    assert second != first
    with pytest.raises(StorageError, match="idempotency key"):
        await queue.requeue(first)  # the key is live again, held by `second`
    assert await queue.cancel(second)
    assert await queue.requeue(first)
    assert await queue.enqueue(taskfns.noop, key="report") == first
    assert await queue.purge() == 2
    assert await _keys(queue, "key:*") == set()
    assert await _keys(queue, "t:*") == set()


async def test_retry_goes_to_the_delayed_set_and_comes_back(queue: AsyncRedisTaskQueue) -> None:
    task_id = await queue.enqueue(taskfns.noop, priority=3)
    (task,) = await queue.claim("w")
    retry = task.evolve(
        status=TaskStatus.RETRYING, run_at=utcnow() + timedelta(seconds=0.2), lease_until=None
    )
    assert await queue.finish("w", [retry]) == {task_id}
    assert await queue.claim("w") == []
    assert await queue.count(status=TaskStatus.RETRYING) == 1
    started = time.monotonic()
    await queue.wait_for_tasks(5)  # returns when the retry comes due, not after 5 s
    assert time.monotonic() - started < 2
    await wait_until(lambda: utcnow() >= retry.run_at, timeout=5)
    (again,) = await queue.claim("w")
    assert (again.id, again.attempts, again.priority) == (task_id, 2, 3)


async def test_idle_waiter_wakes_at_once_for_a_task_from_another_connection(
    queue: AsyncRedisTaskQueue, redis_server: RedisServer, project: str
) -> None:
    other = AsyncRedisTaskQueue(url=redis_server.url, project_name=project)
    try:
        assert await queue.claim("w", queues=["high"]) == []
        await queue.wait_for_tasks(0.01, ["high"])  # subscribes; news of the subscription
        assert await queue.claim("w", queues=["high"]) == []
        waiter = asyncio.create_task(queue.wait_for_tasks(30, ["high"]))
        await other.enqueue(taskfns.noop, queue_name="low")  # not watched: keeps waiting
        await asyncio.wait({waiter}, timeout=0.2)
        assert not waiter.done()
        started = time.monotonic()
        await other.enqueue(taskfns.noop, queue_name="high")
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - started < 1
    finally:
        await other.close()


async def test_results_expire_in_redis(results: AsyncRedisResultStorage) -> None:
    now = utcnow()
    short = TaskResult(task_id="short", status=TaskStatus.SUCCESS, value=1,
                       expires_at=now + timedelta(seconds=30))  # fmt: skip
    forever = TaskResult(task_id="forever", status=TaskStatus.SUCCESS, value=2)
    await results.put_many([short, forever])
    client = results._conn.client
    ttl = await client.pttl(prefix(results.project_name) + "r:short")
    assert 0 < ttl <= 30_000
    assert await client.pttl(prefix(results.project_name) + "r:forever") == -1
    assert (await results.get("short")).value == 1
    assert await results.cleanup_expired() == 0  # nothing to do: Redis expires them
    assert await results.delete("forever") and not await results.delete("forever")
    assert await results.get("forever") is None


@pytest.mark.parametrize("size", [10, INLINE_RESULT_BYTES * 2])
async def test_waiter_gets_small_and_large_results(
    results: AsyncRedisResultStorage, redis_server: RedisServer, project: str, size: int
) -> None:
    writer = AsyncRedisResultStorage(url=redis_server.url, project_name=project)
    try:
        waiter = asyncio.create_task(results.get("t1", wait=True, timeout=10))
        await results._listener.started(5)
        channel = prefix(results.project_name) + "results"
        await writer._conn.client.publish(channel, b"t1 not-a-size\n")  # ignored, not fatal
        value = "x" * size
        await writer.put_many(
            [
                TaskResult(task_id="t0", status=TaskStatus.SUCCESS, value="other"),
                TaskResult(task_id="t1", status=TaskStatus.SUCCESS, value=value),
            ]
        )
        assert (await asyncio.wait_for(waiter, 5)).value == value
    finally:
        await writer.close()
    with pytest.raises(TimeoutError):
        await results.get("never", wait=True, timeout=0.1)


async def test_a_corrupt_record_is_handed_out_to_fail(queue: AsyncRedisTaskQueue) -> None:
    task_id = await queue.enqueue(taskfns.noop, max_retries=3)
    await queue._conn.client.hset(prefix(queue.project_name) + f"t:{task_id}", "d", b"\xc1junk")
    (task,) = await queue.claim("w")
    assert (task.id, task.payload, task.max_retries, task.attempts) == (task_id, b"", 0, 1)
    assert task.error is not None and task.error.type == "CorruptTask"
    assert (await queue.get_task(task_id)).status is TaskStatus.RUNNING


async def test_driver_errors_become_storage_errors(queue: AsyncRedisTaskQueue) -> None:
    await queue._conn.client.set(prefix(queue.project_name) + "queues", b"not a set")
    with pytest.raises(StorageError, match="Redis: claiming tasks failed") as info:
        await queue.claim("w")
    assert "WRONGTYPE" in str(info.value) and info.value.__cause__ is not None


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="url"):
        AsyncRedisTaskQueue(url="http://localhost")
    with pytest.raises(ConfigError, match="max_connections"):
        AsyncRedisResultStorage(max_connections=0)
    assert "secret" not in repr(AsyncRedisTaskQueue(url="redis://:secret@localhost:1/0"))


async def test_keywords_replace_the_parts_of_the_url(
    redis_server: RedisServer, project: str
) -> None:
    queue = AsyncRedisTaskQueue(url="redis://127.0.0.1:1/5", port=redis_server.port, db=0,
                                project_name=project)  # fmt: skip
    try:
        assert await queue.count() == 0
        assert repr(queue).endswith(f"redis://127.0.0.1:{redis_server.port}/0 project='{project}'>")
    finally:
        await queue.close()
    with pytest.raises(ConfigError, match="port"):
        AsyncRedisTaskQueue(port=0)


def test_sync_twins_and_config_structs(redis_server: RedisServer, project: str) -> None:
    config = RedisTaskQueueConfig(project_name=project, url=redis_server.url, queues=["a"])
    with RedisTaskQueue.from_config(config) as queue:
        task_id = queue.enqueue(taskfns.add, {"a": 1, "b": 2}, queue_name="a")
        assert queue.get_task(task_id).status is TaskStatus.PENDING
        assert [t.id for t in queue.list_tasks(queue_name="a")] == [task_id]
        assert queue.count(status="pending") == 1
    store_config = RedisResultStorageConfig(project_name=project, url=redis_server.url)
    with RedisResultStorage.from_config(store_config) as store:
        store.put(TaskResult(task_id=task_id, status=TaskStatus.SUCCESS, value=3))
        assert store.get(task_id, wait=True, timeout=5).unwrap() == 3


async def test_list_and_count_use_the_status_indexes(queue: AsyncRedisTaskQueue) -> None:
    ids = await queue.enqueue_many(
        [{"func": taskfns.noop, "queue_name": q, "priority": p} for q, p in
         [("a", 0), ("b", 9), ("a", 5), ("b", 0)]]
    )  # fmt: skip
    await queue.claim("w", queues=["b"], limit=1)  # the priority-9 task
    assert [t.id for t in await queue.list_tasks()] == ids  # insertion order, any status
    assert [t.id for t in await queue.list_tasks(status="pending")] == [ids[0], ids[2], ids[3]]
    assert [t.id for t in await queue.list_tasks(queue_name="b", limit=1)] == [ids[1]]
    assert await queue.count(queue_name="a") == 2
    assert await queue.count(status="running") == 1
    assert await queue.count(queue_name="zzz") == 0
    assert await queue.list_tasks(limit=0) == []


@pytest.mark.slow
async def test_worker_survives_a_redis_restart(tmp_path: Path) -> None:
    """Restart a persistent (AOF) server while a worker drains: every task ends SUCCESS, each ran
    at least once, none is lost."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    project = f"t{uuid.uuid4().hex[:12]}"
    log = tmp_path / "runs.log"
    queue = AsyncRedisTaskQueue(url=server.url, project_name=project)
    results = AsyncRedisResultStorage(url=server.url, project_name=project)
    events = AsyncSQLiteEventStorage(db_path=str(tmp_path / "events.db"), project_name=project)
    n = 400
    try:
        await queue.enqueue_many([{"func": slow_record, "args": (str(log), i)} for i in range(n)])
        worker = AsyncWorker(
            queue=queue, result_store=results, event_store=events, max_workers=4,
            lease_timeout=2, poll_interval=30,  # wake-ups must come from the subscriptions
        )  # fmt: skip
        async with worker:
            await wait_until(lambda: log.exists() and len(log.read_text().split()) >= 50)
            before = len(log.read_text().split())
            await asyncio.to_thread(server.restart)
            assert before < n and await queue.count(status=TaskStatus.SUCCESS) < n
            await wait_until(lambda: _all_succeeded(queue, n), timeout=90, interval=0.1)
            # Both subscriptions are back: an idle worker wakes, a result waiter is told.
            started = time.monotonic()
            task_id = await queue.enqueue(taskfns.add, args=(2, 3))
            assert (await results.get(task_id, wait=True, timeout=10)).unwrap() == 5
            assert time.monotonic() - started < 1
        runs = {int(x) for x in log.read_text().split()}
        assert runs == set(range(n))  # each ran at least once (a lost reply may run one twice)
        assert await queue.count() == n + 1
        assert await queue.count(status=TaskStatus.SUCCESS) == n + 1
    finally:
        for component in (queue, results, events):
            await component.close()
        server.stop()


async def slow_record(path: str, item: int) -> int:
    await asyncio.sleep(0.005)
    return taskfns.record(path, item)


async def _all_succeeded(queue: AsyncRedisTaskQueue, n: int) -> bool:
    try:
        return await queue.count(status=TaskStatus.SUCCESS) == n
    except StorageError:
        return False  # still reconnecting


async def test_crafted_project_and_queue_names_never_share_a_key(
    redis_server: RedisServer, project: str
) -> None:
    """Given project B = A + '}:idx:pending:x', whose keys used to be keys of A's queue
    'x}:idx:pending:default', the two projects stay isolated."""
    a_queue = "x}:idx:pending:default"
    mine = AsyncRedisTaskQueue(url=redis_server.url, project_name=project)
    theirs = AsyncRedisTaskQueue(url=redis_server.url, project_name=f"{project}}}:idx:pending:x")
    try:
        await theirs.enqueue(taskfns.noop)
        await mine.enqueue(taskfns.noop, queue_name=a_queue, run_in=60)
        assert await mine.count(queue_name=a_queue, status="pending") == 1
        assert await theirs.count(status="pending") == 1
        assert [t.queue_name for t in await theirs.claim("w", limit=5)] == ["default"]
        client = mine._conn.client
        keys = {k.decode() async for k in client.scan_iter(match="omniq:*")}
        tags = {k[k.index("{") + 1 : k.index("}")] for k in keys if project in k}
        assert len(tags) == 2  # one hash tag (cluster slot) per project
    finally:
        await mine.close()
        await theirs.close()
