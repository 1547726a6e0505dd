#!/usr/bin/env python
"""The Django project of the integration tests (run by tests/test_django.py under Python 3.12+)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
