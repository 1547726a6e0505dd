"""The example app's tasks: the app enqueues them, a worker imports them (``--import tasks``)."""

from __future__ import annotations


async def make_report(title: str, rows: int) -> dict[str, object]:
    """A stand-in for slow work: sums the first ``rows`` squares."""
    return {"title": title.title(), "rows": rows, "total": sum(i * i for i in range(rows))}
