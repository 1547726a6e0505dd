"""``@oq.task``: a function that knows how to enqueue itself."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from omniq.allowlist import register

__all__ = ["TaskFunction"]

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E")


class TaskFunction(Generic[P, R, E]):
    """Wraps a function: calling it runs it here; ``.enqueue(*args, **kwargs)`` queues a run.

    Typed by the function: ``P`` its parameters, ``R`` its return type, ``E`` what ``enqueue``
    returns (the task id on ``OmniQ``, an awaitable of it on ``AsyncOmniQ``).
    """

    def __init__(
        self, func: Callable[P, R], submit: Callable[..., E], options: dict[str, Any]
    ) -> None:
        self.__omniq_func__ = func
        register(func)  # workers of this process with an allow-list run it
        self._submit = submit
        self.options = options
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__omniq_func__(*args, **kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> E:
        """Queue a run with these arguments; returns the task id (awaitable on ``AsyncOmniQ``)."""
        return self._submit(self.__omniq_func__, kwargs, args=args, **self.options)

    def step(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """This function with these arguments as a workflow step (``omniq.workflows``)."""
        from omniq.workflows import call

        return call(self.__omniq_func__, kwargs, args=args, **self.options)

    def __repr__(self) -> str:
        return (
            f"<TaskFunction {getattr(self.__omniq_func__, '__qualname__', self.__omniq_func__)!r}>"
        )
