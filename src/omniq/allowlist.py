"""Which task functions a worker may run: checked by name, before anything is imported.

Like Celery, whose workers run only registered tasks: a worker given ``allowed_functions``
(setting ``ALLOWED_FUNCTIONS``, ``omniq worker --allow``) runs a task only when its import path
(``"package.module:qualname"``) matches one of the patterns (:func:`fnmatch.fnmatchcase`, so
``"myapp.tasks:*"``; ``"myapp.tasks.*"`` matches the same paths written with a dot) or names a
function decorated with ``@oq.task`` in the worker's process. A function that travels by value
(pickled) has no name to check and is refused. Once imported, the function must be the one
named, where it is defined (see ``Serializer.decode_call(where_defined=True)``), so an allowed
module's attributes cannot reach other functions (``"myapp.tasks:os.system"``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

from omniq.errors import ConfigError, FunctionNotAllowedError
from omniq.serialization import canonical_path

__all__ = ["AllowList", "parse_patterns", "register"]

_registered: set[str] = set()  # import paths of the @oq.task functions of this process


def register(func: Callable[..., Any]) -> None:
    """Allow ``func`` on this process's workers that have an allow-list (``@oq.task`` does)."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        _registered.add(f"{module}:{qualname}")


def parse_patterns(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Patterns from a list, or from one comma-separated string; None stays None (no list)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise ConfigError(f"allowed_functions must be a list of patterns, got {value!r}")
    return tuple(p.strip() for p in items if p.strip())


class AllowList:
    """The functions one worker may run; ``patterns=None`` allows every function."""

    def __init__(self, patterns: Sequence[str] | None) -> None:
        self.patterns = parse_patterns(patterns)

    @property
    def enabled(self) -> bool:
        return self.patterns is not None

    def check(self, ref: str | None) -> None:
        """Raise :class:`~omniq.errors.FunctionNotAllowedError` unless ``ref`` (an import path,
        or None for a function by value) may run."""
        if self.patterns is None:
            return
        if ref is None:
            raise FunctionNotAllowedError(
                "a function sent by value (pickled: a lambda, a closure, a function of __main__) "
                "cannot be checked against this worker's allow-list; send it by import path"
            )
        path = canonical_path(ref)
        dotted = path.replace(":", ".")
        if path in _registered or any(
            fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(dotted, p) for p in self.patterns
        ):
            return
        raise FunctionNotAllowedError(
            f"function {ref!r} is not allowed on this worker: it matches none of "
            f"{list(self.patterns)} and is not an @oq.task of the worker's process"
        )
