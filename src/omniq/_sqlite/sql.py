"""The SQL of the SQLite backend, read from the package's ``.sql`` files.

Each file is split into sections by lines of the form ``-- name: section``; a section holds one
statement (``schema`` holds several).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from importlib import resources

__all__ = ["QUERIES", "SCHEMA", "SCHEMA_VERSION", "statements"]

SCHEMA_VERSION = 1
_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def load(filename: str) -> dict[str, str]:
    """The named sections of a ``.sql`` file of this package."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


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
