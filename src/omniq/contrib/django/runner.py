"""What an OmniQ worker runs for a Django task: set Django up, close stale database connections
around the call (as Django's request cycle does), call the task, keep its return value as JSON.

Every Django task is enqueued as a call of :func:`run_task`, so this wraps each of them in every
worker type (threads, processes, greenlets, the event loop) without a hook in the worker core.
"""

from __future__ import annotations

from typing import Any

import django
from django.apps import apps

__all__ = ["run_task"]


def run_task(path: str, args: list[Any], kwargs: dict[str, Any], backend: str) -> Any:
    """Run the Django task at ``path`` (its ``module.qualname``) and return its JSON value."""
    if not apps.ready:  # a process-pool child: spawned, it has not run Django's setup
        django.setup()
    from django.db import close_old_connections
    from django.utils.json import normalize_json
    from django.utils.module_loading import import_string

    task = import_string(path)
    if task.backend != backend:
        task = task.using(backend=backend)
    close_old_connections()
    try:
        if task.takes_context:
            value = task.call(_context(task), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        return normalize_json(value)
    finally:
        close_old_connections()


def _context(task: Any) -> Any:
    from django.tasks import TaskContext

    from omniq.context import current_task

    ctx = current_task()
    if ctx is None:
        raise RuntimeError("run_task runs Django tasks inside an OmniQ worker only")
    return TaskContext(task_result=task.get_backend().get_result(ctx.task_id))
