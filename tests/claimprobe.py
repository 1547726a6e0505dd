"""Watch a worker's claim loop, so a test can wait for the state its assertion is about.

"Nothing more was claimed" and "an idle worker wakes at once" mean something only once the
claim loop has settled into its wait: for tasks (nothing to claim) or for a slot (all held).
White box on purpose (the worker has no public idle state); attach before the worker starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class ClaimLoop:
    """What a worker's claim loop is doing: ``waiting_for`` is "tasks", "slot" or None (busy
    claiming or starting), ``finished`` counts the tasks that freed a slot, and ``since`` is
    the value ``finished`` had when the current wait began."""

    def __init__(self, worker: Any) -> None:
        claimer = worker._claimer
        self.waiting_for: str | None = None
        self.finished = 0
        self.since = 0
        claimer._idle = self._watched("tasks", claimer._idle)
        claimer._woken = self._watched("slot", claimer._woken)
        ran = claimer.ran

        def counted_ran(took: float) -> None:
            self.finished += 1  # before the wake-up: a wait begun after it sees the count
            ran(took)

        claimer.ran = counted_ran

    def _watched(
        self, what: str, wait: Callable[..., Awaitable[None]]
    ) -> Callable[..., Awaitable[None]]:
        async def watched(*args: Any) -> None:
            self.waiting_for, self.since = what, self.finished
            try:
                await wait(*args)
            finally:
                self.waiting_for = None

        return watched

    def idle(self, finished: int = 0) -> bool:
        """Waiting for tasks, in a wait begun after at least ``finished`` tasks freed a slot."""
        return self.waiting_for == "tasks" and self.since >= finished

    def full(self) -> bool:
        """Waiting for a slot: it claims nothing until a running task ends."""
        return self.waiting_for == "slot"
