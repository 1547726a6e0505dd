"""Lease renewal cadence, without storage or loops."""

from __future__ import annotations

import pytest

from omniq.workers.base import renew_interval


def test_leases_are_renewed_every_third_of_the_lease_at_most_every_second() -> None:
    assert renew_interval(0.6) == pytest.approx(0.2)
    assert renew_interval(2.7) == pytest.approx(0.9)
    assert renew_interval(3.0) == 1.0
    assert renew_interval(30.0) == 1.0
