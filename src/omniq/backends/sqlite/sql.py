"""The SQL of the SQLite backend, read from the package's ``.sql`` files.

Each file is split into sections by lines of the form ``-- name: section``; a section holds one
statement (``schema`` holds several).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from omniq._sqlfile import load_sections

__all__ = ["QUERIES", "SCHEMA", "SCHEMA_VERSION", "statements"]

SCHEMA_VERSION = 2


def load(filename: str) -> dict[str, str]:
    """The named sections of a ``.sql`` file of this package."""
    return load_sections(__name__.rpartition(".")[0], filename)


def statements(script: str) -> Iterator[str]:
    """The complete statements of a script, one at a time."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


SCHEMA = load("schema.sql")
QUERIES = load("queries.sql")
