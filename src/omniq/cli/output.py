"""How the command shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["emit_json", "every", "plain", "show_fields", "show_table", "show_text", "when"]

# Piped output is not wrapped at 80 columns: ids and names stay whole for grep and friends.
_PIPE_WIDTH = 1000


def emit_json(value: Any) -> None:
    """One JSON document on stdout (datetimes as RFC 3339, structs as objects)."""
    sys.stdout.write(msgspec.json.encode(value, enc_hook=repr).decode() + "\n")


def plain(value: Any) -> Any:
    """A record (msgspec struct) as a dict fit for JSON: payload bytes left out."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, msgspec.Struct):
        fields = msgspec.structs.asdict(value)
        fields.pop("payload", None)
        return {k: plain(v) for k, v in fields.items()}
    return value


def when(moment: datetime | None) -> str:
    """A timestamp in local time, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def every(seconds: float) -> str:
    """An interval in the largest whole unit: ``every 90 s``, ``every 5 min``, ``every 2 h``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"every {seconds // size:g} {unit}"
    return f"every {seconds:g} s"


def _console() -> Console:
    tty = sys.stdout.isatty()
    # Rich writes no colour codes when stdout is not a terminal (and honours NO_COLOR).
    return Console(width=None if tty else _PIPE_WIDTH, highlight=False)


def _cell(value: Any) -> Text:
    # Text, not markup: a "[1, 2]" in a value or an error message stays as it is.
    if value is None:
        return Text("")
    if isinstance(value, datetime):
        return Text(when(value))
    return Text(str(value))


def show_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "none"
) -> None:
    """A table with a title; ``empty`` is printed under the title when there are no rows."""
    console = _console()
    if not rows:
        console.print(Text(f"{title}: {empty}"))
        return
    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def show_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column table of names and values (empty values left out)."""
    rows = [(name, value) for name, value in fields if value not in (None, "", (), [])]
    show_table(title, ["field", "value"], rows)


def show_text(title: str, text: str) -> None:
    """A titled block of plain text (a traceback, say)."""
    console = _console()
    console.print(Text(f"{title}:"))
    console.print(Text(text.rstrip()))
