"""How a task ends (omniq.outcomes), without storage or loops."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from omniq.errors import SerializationError
from omniq.models import EventType, Task, TaskError, TaskStatus, utcnow
from omniq.outcomes import ending, unstorable


def _task(**fields: object) -> Task:
    now = utcnow()
    return Task(id="t1", func_name="m:f", payload=b"", created_at=now, run_at=now, **fields)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (TaskStatus.SUCCESS, EventType.COMPLETE),
        (TaskStatus.FAILED, EventType.ERROR),
        (TaskStatus.CANCELLED, EventType.CANCELLED),
        (TaskStatus.EXPIRED, EventType.EXPIRED),
    ],
)
def test_every_final_status_has_its_event_and_honours_result_ttl(
    status: TaskStatus, event: EventType
) -> None:
    task = _task(result_ttl=60.0, attempts=2, queue_name="q", schedule_id="s")
    error = None if status is TaskStatus.SUCCESS else TaskError(type="E", message="m")
    result, recorded = ending(task, status, value=1, error=error, worker_id="w", duration=0.5)
    assert result.status is status and recorded.type is event
    assert result.expires_at - result.finished_at == timedelta(seconds=60)
    assert recorded.timestamp == result.finished_at
    assert (result.attempts, result.queue_name, result.schedule_id) == (2, "q", "s")
    assert (recorded.attempt, recorded.worker_id, recorded.duration) == (2, "w", 0.5)
    assert (recorded.queue_name, recorded.schedule_id) == ("q", "s")
    assert recorded.error == result.error == error


@pytest.mark.parametrize("ttl", [None, math.inf, 1e300, math.nan])
def test_a_result_ttl_without_a_date_keeps_the_result(ttl: float | None) -> None:
    result, _ = ending(_task(result_ttl=ttl), TaskStatus.SUCCESS)
    assert result.expires_at is None


def test_an_unstorable_value_is_a_serialization_error_naming_its_type() -> None:
    error = unstorable([[]], RecursionError("maximum recursion depth exceeded"))
    assert error.type == "SerializationError"
    assert "list" in error.message and "RecursionError" in error.message
    own = unstorable(object(), SerializationError("task result of type X needs pickling"))
    assert own.message == "task result of type X needs pickling"
