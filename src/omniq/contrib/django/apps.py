"""The app entry that makes ``manage.py omniq_worker`` available (``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["OmniQAppConfig"]


class OmniQAppConfig(AppConfig):
    """OmniQ's Django app: no models, one management command."""

    name = "omniq.contrib.django"
    label = "omniq"
    verbose_name = "OmniQ"
