"""The pytest plugin (entry point ``pytest11``, loaded wherever OmniQ is installed): a fresh,
isolated OmniQ per test.

Fixtures: ``omniq`` (in memory; nothing runs until ``omniq.drain()``), ``omniq_eager`` (in
memory; every enqueue runs its task) and ``omniq_sqlite`` (an SQLite database in the test's
``tmp_path``, as a deployment without a server would use).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omniq.testing._twins import TestOmniQ

__all__ = ["omniq", "omniq_eager", "omniq_sqlite"]


def _open(**options: Any) -> TestOmniQ:
    return TestOmniQ(project_name=f"test-{uuid.uuid4().hex[:12]}", **options)


@pytest.fixture
def omniq() -> Iterator[TestOmniQ]:
    """A ``TestOmniQ`` in memory: enqueue, then ``omniq.drain()`` runs everything."""
    with _open() as oq:
        yield oq


@pytest.fixture
def omniq_eager() -> Iterator[TestOmniQ]:
    """A ``TestOmniQ`` in memory whose enqueues run their tasks before returning."""
    with _open(eager=True) as oq:
        yield oq


@pytest.fixture
def omniq_sqlite(tmp_path: Path) -> Iterator[TestOmniQ]:
    """A ``TestOmniQ`` on an SQLite database in ``tmp_path``."""
    with _open(base_dir=str(tmp_path / "omniq")) as oq:
        yield oq
