"""The retry policy: when a failed attempt runs again. Pure functions, no I/O."""

from __future__ import annotations

import random

__all__ = ["MAX_RETRY_DELAY", "retry_delay", "should_retry"]

MAX_RETRY_DELAY = 3600.0


def should_retry(attempts: int, max_retries: int) -> bool:
    """True while attempts made so far leave a retry (``max_retries`` retries after the first)."""
    return attempts <= max_retries


def retry_delay(
    attempts: int,
    base_delay: float,
    *,
    cap: float = MAX_RETRY_DELAY,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next attempt: ``base_delay * 2**(attempts-1)`` capped at ``cap``,
    with "equal jitter" (a uniform draw from its upper half) so retries of many tasks spread out."""
    if base_delay <= 0:
        return 0.0
    ceiling = min(cap, base_delay * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
