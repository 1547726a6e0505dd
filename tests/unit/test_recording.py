"""The worker's flush loop: start marks before outcomes, and outcomes not held back by starts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from conftest import wait_until

from omniq.models import Task, TaskStatus, utcnow
from omniq.workers._events import EventBuffer
from omniq.workers.endings import Endings
from omniq.workers.recording import Recorder


def _task(n: int) -> Task:
    now = utcnow()
    return Task(id=f"t{n}", func_name="f", payload=b"", created_at=now, run_at=now)


class BusyQueue:
    """A queue whose every start-mark write sees another task claimed ahead start meanwhile,
    as while a worker drains many short tasks; it logs what is written, in order."""

    def __init__(self, starts_meanwhile: int) -> None:
        self.log: list[tuple[str, list[str]]] = []
        self.recorder: Recorder | None = None
        self._more = starts_meanwhile
        self._next = 100

    async def mark_started(self, worker_id: str, tasks: Sequence[Task]) -> None:
        self.log.append(("start", [t.id for t in tasks]))
        await asyncio.sleep(0)
        if self._more > 0 and self.recorder is not None:
            self._more -= 1
            self._next += 1
            self.recorder.started(_task(self._next))

    async def finish(self, worker_id: str, tasks: Sequence[Task]) -> None:
        self.log.append(("finish", [t.id for t in tasks]))


async def test_outcomes_are_written_while_tasks_keep_starting_each_after_its_start() -> None:
    # Given a worker whose tasks claimed ahead keep starting while their start marks are written
    queue = BusyQueue(starts_meanwhile=50)
    written: list[int] = []
    recorder = Recorder("w", queue, None, Endings("w", None, EventBuffer(None)), written.append)
    queue.recorder = recorder
    recorder.open()
    # When a task starts and ends
    first = _task(1)
    recorder.started(first)
    recorder.add((first.evolve(status=TaskStatus.SUCCESS), None))
    flush = asyncio.get_running_loop().create_task(recorder.run())
    try:
        # Then its outcome is written long before the starts run dry, after its own start
        await wait_until(lambda: written == [1])
        kinds = [kind for kind, _ in queue.log]
        assert kinds.index("finish") < 5, queue.log
        assert queue.log[0] == ("start", ["t1"])
        assert queue.log[kinds.index("finish")] == ("finish", ["t1"])
        # and every start is still written
        await wait_until(lambda: sum(len(ids) for kind, ids in queue.log if kind == "start") == 51)
    finally:
        flush.cancel()
        await asyncio.gather(flush, return_exceptions=True)
