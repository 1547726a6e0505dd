"""Named sections of the ``.sql`` files shipped with the SQL backends.

A file is split into sections by lines of the form ``-- name: section``.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_sections"]

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def load_sections(package: str, filename: str) -> dict[str, str]:
    """The named sections of ``filename`` in ``package``."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}
