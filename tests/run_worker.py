"""A worker in its own process, built from a backend spec given as JSON (used by the tests)."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
from typing import Any

# A stop request that arrives while the process is still starting ends it cleanly (nothing has
# been claimed yet); once running, the worker's own handlers stop it gracefully.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

import omniq.workers.claiming as claiming  # noqa: E402
from omniq.workers import AsyncThreadPoolWorker, AsyncWorker  # noqa: E402


def build(path: str | None, args: dict[str, Any]) -> Any:
    if path is None:
        return None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)(**args)


async def main(
    spec: dict[str, Any],
    worker_type: str,
    lease_timeout: float,
    max_workers: int,
    short_task: float | None = None,
) -> None:
    if short_task is not None:
        # The mean run time under which the worker claims ahead (tests that need it to), and a
        # horizon long enough that it claims as far ahead as allowed however slow the machine.
        claiming._SHORT_TASK = short_task
        claiming._AHEAD_HORIZON = short_task
    args = spec["args"]
    worker_class = AsyncWorker if worker_type == "async" else AsyncThreadPoolWorker
    worker = worker_class(
        queue=build(spec["queue"], args),
        result_store=build(spec["results"], args),
        event_store=build(spec["events"], spec["event_args"]),
        lease_timeout=lease_timeout,
        poll_interval=0.05,
        max_workers=max_workers,
    )
    await worker.run()


if __name__ == "__main__":
    short = float(sys.argv[5]) if len(sys.argv) > 5 else None
    asyncio.run(
        main(json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), short)
    )
