"""A stored task with a corrupt field fails alone, on every backend whose storage can be written
from outside (the memory backend cannot: nothing but the process touches it): the tasks around
it run, listing, counting and lookups go on working, and the worker does not flood its log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import taskfns
from backends import BackendSpec
from conftest import BACKENDS, Storages, make_spec, wait_until

from omniq.models import TaskStatus
from omniq.workers import AsyncWorker

_ROW_PROBLEMS = ("failed", "corrupt")  # words of the worker's and codecs' log lines about rows
# A claim adds one to the stored attempt count; where that is SQL or Lua arithmetic, a count
# that is not a number is taken as 0 and so repaired, and the task may run like any other.
_REPAIRED_BY_CLAIM = {"attempts"}


@pytest.fixture(params=[name for name in BACKENDS if name != "memory"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    """Overrides conftest's ``spec``: the backends whose stored tasks can be corrupted."""
    return make_spec(request, request.param, tmp_path)


async def test_a_corrupt_field_fails_only_its_task(
    storages: Storages, caplog: pytest.LogCaptureFixture
) -> None:
    spec, q, results = storages.spec, storages.queue, storages.results
    assert spec.corrupt is not None
    good, bad = [], {}
    for name in spec.corruptible:
        good.append(await q.enqueue(taskfns.add, args=(1, 2)))
        bad[name] = await q.enqueue(taskfns.add, args=(1, 2))
        # The same corruption in a delayed task, which some backends keep elsewhere until due.
        bad[f"{name} (delayed)"] = await q.enqueue(taskfns.add, args=(1, 2), run_in=0.5)
    good.append(await q.enqueue(taskfns.add, args=(1, 2), queue_name="other"))
    for label, task_id in bad.items():
        await spec.corrupt(storages.project, await q.get_task(task_id), label.split()[0])

    # PostgreSQL lists all statuses status by status (an index each): one it does not know
    # is counted, but left out of such a listing.
    listed = {t.id for t in await q.list_tasks(limit=1000)}
    unknown = {task_id for label, task_id in bad.items() if label.startswith("status")}
    assert {*good, *bad.values()} - unknown <= listed <= {*good, *bad.values()}
    assert await q.count() == len(good) + len(bad)
    assert await q.count(queue_name="other") == 1
    for label, task_id in bad.items():
        read = await q.get_task(task_id)
        assert read is not None and read.id == task_id, label

    with caplog.at_level(logging.INFO, logger="omniq"):
        async with AsyncWorker(
            queue=q, result_store=results, max_workers=2, poll_interval=0.05
        ) as worker:
            for task_id in good:
                assert (await results.get(task_id, wait=True, timeout=20)).unwrap() == 3

            async def all_ended() -> bool:
                tasks = [await q.get_task(t) for t in bad.values()]
                return all(t.status in (TaskStatus.FAILED, TaskStatus.SUCCESS) for t in tasks)

            await wait_until(all_ended, timeout=20)
            await worker.join(timeout=20)

    for label, task_id in bad.items():
        name = label.split()[0]
        task = await q.get_task(task_id)
        if name in _REPAIRED_BY_CLAIM and task.status is TaskStatus.SUCCESS:
            assert task.attempts == 1, label
            good.append(task_id)
            continue
        assert task.status is TaskStatus.FAILED, (label, task)
        assert task.error is not None and name in task.error.message, (label, task.error)
        if name != "status":  # a task of no known status is never claimed: it only reads FAILED
            result = await results.get(task_id)
            assert result is not None and result.status is TaskStatus.FAILED, label
            assert name in result.error.message, (label, result.error)
    assert await q.count(status=TaskStatus.SUCCESS) == len(good)
    noisy = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "claim" in r.getMessage()
    ]
    assert len(noisy) <= 2, [r.getMessage() for r in noisy]
    problems = [r for r in caplog.records if any(w in r.getMessage() for w in _ROW_PROBLEMS)]
    assert len(problems) <= 10 * len(bad), [r.getMessage() for r in problems[:20]]
