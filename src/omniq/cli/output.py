"""How the command shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

__all__ = ["emit_json", "show_table", "when"]


def emit_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value, enc_hook=_fallback).decode() + "\n")


def _fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def show_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    tty = sys.stdout.isatty()
    # Piped output is not wrapped at 80 columns: ids and names stay whole for grep and friends.
    Console(no_color=not tty, width=None if tty else 200).print(table)
