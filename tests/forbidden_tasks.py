"""A task module no test imports: the allow-list tests check that refusing one of its functions
never imports it."""

from __future__ import annotations

from pathlib import Path


def run(path: str) -> None:
    Path(path).write_text("ran")
