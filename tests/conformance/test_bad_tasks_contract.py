"""End to end on every backend: a bad task fails only itself (issue 14, items 8-11, 16).

Whatever a task raises or returns, and whatever goes wrong while its outcome is recorded, that
task ends (FAILED or retried) with a readable error, the worker goes on with the next task, and
``stop()`` returns.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import taskfns
from conftest import Storages

from omniq import AsyncOmniQ
from omniq.config import Settings
from omniq.models import Task, TaskStatus, utcnow
from omniq.workers import AsyncThreadPoolWorker, AsyncWorker

WORKERS = {"async": AsyncWorker, "thread": AsyncThreadPoolWorker}


def make_worker(storages: Storages, kind: str = "async", **options):
    options.setdefault("poll_interval", 0.05)
    options.setdefault("stop_timeout", 5)
    return WORKERS[kind](
        queue=storages.queue, result_store=storages.results, event_store=storages.events, **options
    )


async def _results(storages: Storages, ids: list[str]) -> list:
    return [await storages.results.get(i, wait=True, timeout=10) for i in ids]


@pytest.mark.parametrize("kind", list(WORKERS))
async def test_base_exceptions_fail_only_their_task(storages: Storages, kind: str) -> None:
    q = storages.queue
    bad = {
        "SystemExit": await q.enqueue(taskfns.exit_now, max_retries=0),
        "KeyboardInterrupt": await q.enqueue(taskfns.interrupt, max_retries=0),
        "GeneratorExit": await q.enqueue(taskfns.generator_exit, max_retries=0),
        "StopIteration": await q.enqueue(taskfns.stop_iteration, max_retries=0),
    }
    if kind == "async":  # raised on the worker's own event loop
        bad["SystemExit "] = await q.enqueue(taskfns.async_exit_now, max_retries=0)
    async with make_worker(storages, kind, max_workers=2) as worker:
        found = await _results(storages, list(bad.values()))
        good = await q.enqueue(taskfns.add, args=(2, 3))
        assert (await storages.results.get(good, wait=True, timeout=10)).unwrap() == 5
        await worker.join(timeout=10)
    for kind_name, result in zip(bad, found, strict=True):
        assert result.status is TaskStatus.FAILED, kind_name
        assert result.error.type == kind_name.strip()
    assert found[3].error.message == "out of items"


@pytest.mark.parametrize("kind", list(WORKERS))
async def test_a_timeout_error_the_task_raises_is_an_ordinary_failure(
    storages: Storages, kind: str
) -> None:
    q = storages.queue
    plain = await q.enqueue(taskfns.raise_timeout, max_retries=1, retry_delay=0.01)
    with_timeout = await q.enqueue(taskfns.raise_timeout, max_retries=0, timeout=30)
    inner = await q.enqueue(taskfns.async_wait_for_times_out, max_retries=0, timeout=30)
    async with make_worker(storages, kind, max_workers=2):
        found = await _results(storages, [plain, with_timeout, inner])
    for result in found:
        assert result.status is TaskStatus.FAILED
        assert result.error.type == "TimeoutError", result.error
    assert found[0].attempts == 2  # retried like any failure
    assert found[0].error.message == "socket timed out"


@pytest.mark.parametrize("kind", list(WORKERS))
async def test_unencodable_results_fail_only_their_task(storages: Storages, kind: str) -> None:
    q = storages.queue
    funcs = {
        "generator": taskfns.return_generator,
        "list": taskfns.return_deep_list,
    }
    ids = [await q.enqueue(f, max_retries=3) for f in funcs.values()]
    async with make_worker(storages, kind, max_workers=4) as worker:
        found = await _results(storages, ids)
        good = await q.enqueue(taskfns.add, args=(1, 1))
        assert (await storages.results.get(good, wait=True, timeout=10)).unwrap() == 2
        await worker.join(timeout=10)
    for type_name, task_id, result in zip(funcs, ids, found, strict=True):
        assert result.status is TaskStatus.FAILED and result.attempts == 1  # no retry
        assert result.error.type == "SerializationError"
        assert type_name in result.error.message
        assert (await q.get_task(task_id)).status is TaskStatus.FAILED


async def test_a_result_that_needs_pickling_fails_where_pickling_is_off(
    storages: Storages,
) -> None:
    spec, project = storages.spec, storages.project
    no_pickle = spec.build(
        spec.results,
        project,
        {**spec.component_args(project), "settings": Settings(ALLOW_PICKLE=False)},
    )
    q = storages.queue
    try:
        pair = await q.enqueue(taskfns.return_tuple)
        lock = await q.enqueue(taskfns.return_lock)
        good = await q.enqueue(taskfns.add, args=(1, 1))
        async with AsyncWorker(queue=q, result_store=no_pickle, poll_interval=0.05) as worker:
            result = await no_pickle.get(pair, wait=True, timeout=10)
            lock_result = await no_pickle.get(lock, wait=True, timeout=10)
            assert (await no_pickle.get(good, wait=True, timeout=10)).unwrap() == 2
            await worker.join(timeout=10)
    finally:
        await no_pickle.close()
    assert result.status is TaskStatus.FAILED and result.error.type == "SerializationError"
    assert "tuple" in result.error.message
    assert lock_result.status is TaskStatus.FAILED and "lock" in lock_result.error.message


async def test_errors_on_the_outcome_path_fail_only_their_task(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    unprintable = await q.enqueue(taskfns.raise_unprintable, max_retries=0)
    now = utcnow()
    forever = Task(
        id="forever-" + storages.project,
        func_name="taskfns:add",
        payload=q.serializer.encode_call(taskfns.add, (1, 2)),
        created_at=now,
        run_at=now,
        result_ttl=math.inf,  # as a stored row may hold it
    )
    await q._insert([forever])
    dependency = await q.enqueue(taskfns.add, args=(1, 2))
    async with make_worker(storages, max_workers=2, lease_timeout=30) as worker:
        stored = await results.get(dependency, wait=True, timeout=10)
        await results._put_many([(stored, b"\xc1 not a result")])  # corrupt it
        dependent = q.build_task(
            taskfns.add, args=(1,), depends_on=[dependency], _inputs=("one", [dependency])
        )
        await q.enqueue_tasks([dependent])
        worker.watch_dependencies()
        found = await _results(storages, [unprintable, forever.id, dependent.id])
        good = await q.enqueue(taskfns.add, args=(2, 2))
        assert (await results.get(good, wait=True, timeout=10)).unwrap() == 4
        await worker.join(timeout=10)
    failed_str, kept, broken_input = found
    assert failed_str.status is TaskStatus.FAILED
    assert failed_str.error.type == "UnprintableError" and "str()" in failed_str.error.message
    # A backend that reads stored rows through its codec refuses a non-finite result_ttl as
    # corrupt; memory keeps its objects and the result with them, forever: alone, either way.
    if kept.ok:
        assert kept.unwrap() == 3 and kept.expires_at is None
    else:
        assert kept.error.type == "CorruptTask" and "result_ttl" in kept.error.message
    assert broken_input.status is TaskStatus.FAILED
    assert broken_input.error.type == "SerializationError"
    assert dependency in broken_input.error.message


async def test_every_ending_honours_result_ttl(storages: Storages) -> None:
    q, results = storages.queue, storages.results
    ttl = timedelta(minutes=5)
    async with AsyncOmniQ(task_queue=q, result_store=results, event_store=storages.events) as oq:
        pending = await oq.enqueue(taskfns.noop, run_in=60, result_ttl=ttl)
        assert await oq.cancel(pending)
        cancelled = await results.get(pending)
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.expires_at is not None
    assert cancelled.expires_at - cancelled.finished_at == ttl
