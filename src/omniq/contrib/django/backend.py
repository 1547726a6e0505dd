"""``OmniQBackend``: Django's Tasks framework (``django.tasks``) on OmniQ."""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from omniq import OmniQ
from omniq.contrib.django import config
from omniq.contrib.django.results import django_result
from omniq.contrib.django.runner import run_task
from omniq.models import utcnow

__all__ = ["OmniQBackend"]

_RUNNER = f"{run_task.__module__}:{run_task.__qualname__}"


class OmniQBackend(BaseTaskBackend):
    """Enqueues Django tasks into OmniQ and reads their results back.

    ``OPTIONS`` configure the OmniQ facade (see :mod:`omniq.contrib.django.config`). A task's
    Django priority (-100..100, higher first) is its OmniQ priority unchanged: OmniQ also runs
    higher priorities first inside a queue and takes any int. ``run_after`` is the task's
    ``run_at``; the queue name is OmniQ's queue name.
    """

    supports_defer = True
    supports_async_task = True  # run by the worker through asgiref's async_to_sync
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.task_options = dict(self.options.get("task_options", {}))

    @property
    def omniq(self) -> OmniQ:
        """The process's facade for this backend (shared with ``get_omniq(alias)``)."""
        return config.get_omniq(self.alias)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        run_at = task.run_after
        if run_at is not None and timezone.is_naive(run_at):
            run_at = timezone.make_aware(run_at)  # USE_TZ=False: Django's local time
        task_id = self.omniq.enqueue(
            run_task,
            {"path": task.module_path, "args": args, "kwargs": kwargs, "backend": self.alias},
            queue_name=task.queue_name,
            priority=task.priority,
            run_at=run_at,
            **self.task_options,
        )
        result = TaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=utcnow(),  # aware UTC, as get_result gives it
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        oq = self.omniq
        stored = oq.get_task(result_id)
        if stored is None:
            raise TaskResultDoesNotExist(result_id)
        call = _call_of(oq, stored)
        django_task = import_string(call["path"])
        return django_result(
            django_task=django_task,
            task=stored,
            result=oq.get_result(result_id) if oq.result_store is not None else None,
            events=oq.get_events(task_id=result_id),
            args=call["args"],
            kwargs=call["kwargs"],
            backend=self.alias,
        )


def _call_of(oq: OmniQ, stored: Any) -> dict[str, Any]:
    """The Django call a stored task holds (a task not enqueued by this backend: not found)."""
    queue = oq.task_queue
    serializer = queue.serializer
    payload = serializer.unseal(stored.payload, "task", queue.project_name, stored.id)
    # Checked before decoding, which would import (or unpickle) another task's function.
    if serializer.function_ref(payload) != _RUNNER:
        raise TaskResultDoesNotExist(f"{stored.id} is not a Django task")
    _, _, call = serializer.decode_call(payload)
    return call


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_kwargs: Any) -> None:
    if setting == "TASKS":
        config.close_all()
