"""omniq.testing as a user's test suite uses it: TestOmniQ's drain() and eager mode, the async
twin, and the pytest plugin's fixtures (run by pytester in a pytest of their own)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from taskfns import async_sleep

from omniq import SerializationError, TaskFailedError, TaskStatus
from omniq.testing import AsyncTestOmniQ, TestOmniQ
from omniq.workflows import call, chain

pytest_plugins = ["pytester"]

attempts: Counter[str] = Counter()
SHARED: list[int] = [1, 2, 3]
#: The facade a task enqueues its follow-up on (set by the test that uses it).
current: dict[str, Any] = {}


def add(a: int, b: int) -> int:
    return a + b


async def async_double(x: int) -> int:
    return 2 * x


def flaky(name: str, failures: int) -> int:
    attempts[name] += 1
    if attempts[name] <= failures:
        raise ValueError(f"{name}: attempt {attempts[name]} fails")
    return attempts[name]


def is_shared(value: list[int]) -> bool:
    return value is SHARED


def fail() -> None:
    raise ZeroDivisionError("no")


def with_follow_up(x: int) -> str:
    return current["oq"].enqueue(add, {"a": x, "b": 1})


def test_nothing_runs_until_drain_which_runs_delayed_retrying_and_dependent_tasks() -> None:
    with TestOmniQ() as oq:
        # Given a task due in an hour, one that fails twice with a minute's backoff, and one
        # that depends on the delayed one
        later = oq.enqueue(add, {"a": 1, "b": 2}, run_in=timedelta(hours=1))
        retried = oq.enqueue(flaky, {"name": "drain", "failures": 2}, retry_delay=60)
        after = oq.enqueue(add, {"a": 2, "b": 2}, depends_on=[later])
        assert oq.get_task(later).status is TaskStatus.PENDING
        assert oq.get_task(after).status is TaskStatus.WAITING
        # When drained
        results = oq.drain()
        # Then each ran to its end at once, and the results come in enqueue order
        assert list(results) == [later, retried, after]
        assert [r.value for r in results.values()] == [3, 3, 4]
        assert results[retried].attempts == 3
        assert all(r.status is TaskStatus.SUCCESS for r in results.values())
        # And a second drain has nothing left to run
        assert oq.drain() == {}


def test_eager_runs_at_enqueue_through_encode_and_decode() -> None:
    with TestOmniQ(eager=True) as oq:
        task_id = oq.enqueue(add, {"a": 20, "b": 22})
        assert oq.get_result(task_id).value == 42
        # The argument travelled as in a real run: the task got a copy, not the object
        copied = oq.enqueue(is_shared, args=(SHARED,))
        assert oq.get_result(copied).value is False
        # An argument that cannot be encoded raises at enqueue, naming it; nothing is stored
        with pytest.raises(SerializationError, match="'value'"):
            oq.enqueue(is_shared, {"value": (i for i in range(3))})
        assert oq.count() == 2
        # Async functions, and the decorator
        assert oq.get_result(oq.enqueue(async_double, {"x": 4})).value == 8

        @oq.task(max_retries=0)
        def shout(word: str) -> str:
            return word.upper()

        assert oq.get_result(shout.enqueue("hi")).value == "HI"


def test_eager_failures_are_results_or_raise_with_raise_errors() -> None:
    with TestOmniQ(eager=True) as oq:
        failed = oq.get_result(oq.enqueue(fail, max_retries=2, retry_delay=30))
        assert failed.status is TaskStatus.FAILED
        assert failed.attempts == 3 and failed.error.type == "ZeroDivisionError"
    with (
        TestOmniQ(eager=True, raise_errors=True) as oq,
        pytest.raises(TaskFailedError, match="ZeroDivisionError"),
    ):
        oq.enqueue(fail, max_retries=0)


def test_eager_tasks_that_enqueue_tasks_and_workflows_run_to_their_end() -> None:
    with TestOmniQ(eager=True) as oq:
        current["oq"] = oq
        try:
            parent = oq.enqueue(with_follow_up, {"x": 41})
        finally:
            current.clear()
        child = oq.get_result(parent).value
        assert oq.get_result(child).value == 42
        final = oq.enqueue_workflow(chain(call(add, {"a": 1, "b": 2}), call(async_double)))
        assert oq.get_result(final).value == 6


def test_a_drain_that_times_out_says_so_and_hands_running_tasks_back() -> None:
    with TestOmniQ() as oq:
        task_id = oq.enqueue(async_sleep, {"seconds": 60})
        with pytest.raises(TimeoutError, match="1 tasks still unfinished"):
            oq.drain(timeout=0.2)
        assert oq.get_task(task_id).status is TaskStatus.PENDING


def test_drain_on_sqlite(tmp_path: Path) -> None:
    with TestOmniQ(base_dir=str(tmp_path)) as oq:
        ids = [oq.enqueue(add, {"a": i, "b": i}, run_in=timedelta(minutes=5)) for i in range(3)]
        results = oq.drain()
        assert [results[i].value for i in ids] == [0, 2, 4]
    assert (tmp_path / "omniq.db").exists()


async def test_the_async_twin() -> None:
    async with AsyncTestOmniQ() as oq:
        task_id = await oq.enqueue(async_double, {"x": 21}, run_in=timedelta(days=1))
        assert (await oq.drain())[task_id].value == 42
    async with AsyncTestOmniQ(eager=True) as oq:
        task_id = await oq.enqueue(flaky, {"name": "async", "failures": 1}, retry_delay=60)
        result = await oq.get_result(task_id)
        assert (result.value, result.attempts) == (2, 2)


USER_TESTS = """
from datetime import timedelta

from omniq import TaskStatus


def add(a, b):
    return a + b


def test_drain(omniq):
    task_id = omniq.enqueue(add, {"a": 1, "b": 2}, run_in=timedelta(hours=1))
    assert omniq.get_task(task_id).status is TaskStatus.PENDING
    assert omniq.drain()[task_id].value == 3


def test_eager(omniq_eager):
    assert omniq_eager.get_result(omniq_eager.enqueue(add, {"a": 2, "b": 2})).value == 4


def test_sqlite(omniq_sqlite, tmp_path):
    task_id = omniq_sqlite.enqueue(add, {"a": 3, "b": 3})
    assert omniq_sqlite.drain()[task_id].value == 6
    assert (tmp_path / "omniq" / "omniq.db").exists()


def test_isolated(omniq, omniq_eager):
    assert omniq.count() == 0 and omniq_eager.count() == 0
"""


def test_the_pytest_plugin_gives_each_test_its_own_omniq(pytester: pytest.Pytester) -> None:
    # The plugin comes from the installed package's pytest11 entry point, as for any user.
    pytester.makepyfile(test_user=USER_TESTS)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    outcome.assert_outcomes(passed=4)
