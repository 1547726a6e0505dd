"""Settings from the environment that tests/test_django.py gives: OmniQ's backend URL
(``DJANGO_TEST_OMNIQ_URL``, SQLite or PostgreSQL) and Django's own database beside it."""

import os
from urllib.parse import urlsplit

SECRET_KEY = "omniq-django-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["omniq.contrib.django", "shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

OMNIQ_URL = os.environ["DJANGO_TEST_OMNIQ_URL"]
_DB_NAME = os.environ.get("DJANGO_DB_NAME")  # the test database, for the worker process

if OMNIQ_URL.startswith("postgresql://"):
    _pg = urlsplit(OMNIQ_URL)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _DB_NAME or _pg.path.lstrip("/"),
            "USER": _pg.username,
            "HOST": _pg.hostname,
            "PORT": _pg.port,
            "CONN_MAX_AGE": 0,
        }
    }
else:
    _db_file = os.path.join(os.environ["DJANGO_DATA_DIR"], "django.sqlite3")
    _test_file = os.path.join(os.environ["DJANGO_DATA_DIR"], "test-django.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _DB_NAME or _db_file,
            # A file, not memory: the worker is another process.
            "TEST": {"NAME": _test_file},
            "CONN_MAX_AGE": 0,
        }
    }

TASKS = {
    "default": {
        "BACKEND": "omniq.contrib.django.OmniQBackend",
        "QUEUES": ["default", "emails", "children"],
        "OPTIONS": {
            "url": OMNIQ_URL,
            "project_name": os.environ["DJANGO_TEST_PROJECT"],
            "settings": {"BASE_DIR": os.environ["DJANGO_DATA_DIR"], "POLL_INTERVAL": 0.05},
            "task_options": {"max_retries": 1, "retry_delay": 0.05},
        },
    }
}
