"""The memory backend."""

from __future__ import annotations

from typing import Any

from omniq.registry import builtin_entry


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    """``memory://`` is this backend; ``memory://name`` is a directory of the file backend."""
    rest = url.split("://", 1)[1]
    return ("file", {"base_dir": url}) if rest.strip("/") else ("memory", {})


ENTRY = builtin_entry(
    "memory", "Memory", events=True, schemes=("memory",), url_options=_url_options
)
