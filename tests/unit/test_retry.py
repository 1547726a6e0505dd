"""The retry policy, without storage or loops."""

from __future__ import annotations

import random

from omniq.retry import retry_delay, should_retry


def test_retries_are_counted_after_the_first_attempt() -> None:
    assert should_retry(1, 2) and should_retry(2, 2) and not should_retry(3, 2)
    assert not should_retry(1, 0)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)]:
        delay = retry_delay(attempt, 1.0, cap=60.0, rng=rng)
        assert ceiling / 2 <= delay <= ceiling
    assert retry_delay(5, 0) == 0.0
