"""OmniQ for Django: a backend for Django's Tasks framework, ``manage.py omniq_worker`` (with
``"omniq.contrib.django"`` in ``INSTALLED_APPS``) and OmniQ's own facade configured from the
``TASKS`` setting (``get_omniq()``, for workflows and schedules). Needs Django 6.0+."""

from __future__ import annotations

from omniq.contrib.django.backend import OmniQBackend
from omniq.contrib.django.config import get_omniq

__all__ = ["OmniQBackend", "get_omniq"]
