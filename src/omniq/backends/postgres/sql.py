"""The SQL of the PostgreSQL backend, read from the package's ``.sql`` files.

Each file is split into sections by lines of the form ``-- name: section``. ``schema.sql`` holds
the migrations (``migration_1``, ``migration_2``, ...): the schema version is the highest one.
"""

from __future__ import annotations

import re

from omniq._sqlfile import load_sections

__all__ = ["MIGRATIONS", "QUERIES", "SCHEMA", "SCHEMA_VERSION", "load"]

_MIGRATION = re.compile(r"^migration_(\d+)$")


def load(filename: str) -> dict[str, str]:
    """The named sections of a ``.sql`` file of this package."""
    return load_sections(__name__.rpartition(".")[0], filename)


SCHEMA = load("schema.sql")
QUERIES = load("queries.sql")
MIGRATIONS: dict[int, str] = dict(
    sorted(
        (int(match.group(1)), sql)
        for name, sql in SCHEMA.items()
        if (match := _MIGRATION.match(name)) is not None
    )
)
SCHEMA_VERSION = max(MIGRATIONS)
if list(MIGRATIONS) != list(range(1, SCHEMA_VERSION + 1)):
    raise RuntimeError(
        f"omniq/_postgres/schema.sql: migrations must be 1..N, got {list(MIGRATIONS)}"
    )
