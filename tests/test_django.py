"""The Django integration (``omniq.contrib.django``) under Django's own test runner.

Django 6 needs Python 3.12+, the suite runs on 3.11: this test builds (once, and again when the
project's dependencies change) a virtualenv ``.venv-django`` with a Python 3.12+ found on the
machine, Django and this repository installed editable, then runs the test project's tests
(tests/django_project: settings, an app with tasks, a worker in another process) in it, with
OmniQ and Django's database on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from servers.postgres import PostgresServer, postgres_server_fixture  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "tests" / "django_project"
VENV = REPO / ".venv-django"
STAMP = VENV / "omniq-stamp"
EXTRAS = "django,postgres,cli"
# A pyenv shim for a version that is not enabled fails when run: each candidate is tried.
CANDIDATES = ["python3.13", "python3.12", *sorted(glob.glob(
    os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")), reverse=True)]  # fmt: skip


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def find_python() -> str:
    """A Python 3.12+ interpreter (``OMNIQ_DJANGO_PYTHON``, else the first candidate that runs)."""
    given = os.environ.get("OMNIQ_DJANGO_PYTHON")
    for candidate in [given] if given else CANDIDATES:
        found = shutil.which(candidate)
        if found and _run([found, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                          timeout=30).returncode == 0:  # fmt: skip
            return found
    raise AssertionError(
        f"Django 6 needs Python 3.12+: none of {CANDIDATES} runs; install one (or set "
        "OMNIQ_DJANGO_PYTHON to its path)"
    )


def _stamp(python: str) -> str:
    digest = hashlib.sha256()
    for path in (REPO / "pyproject.toml", PROJECT / "requirements.txt"):
        digest.update(path.read_bytes())
    digest.update(_run([python, "-VV"], timeout=30).stdout.encode())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def django_python() -> Path:
    """The virtualenv's interpreter, built unless the stamp says it is current."""
    python = find_python()
    stamp = _stamp(python)
    if STAMP.exists() and STAMP.read_text() == stamp:
        return VENV / "bin" / "python"
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        [python, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-e", f"{REPO}[{EXTRAS}]",
         "-r", str(PROJECT / "requirements.txt")],
    ]  # fmt: skip
    for step in steps:
        done = _run(step, timeout=600)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}"
    STAMP.write_text(stamp)
    return VENV / "bin" / "python"


def run_django_tests(python: Path, omniq_url: str, data_dir: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("OMNIQ_", "DJANGO_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "DJANGO_TEST_OMNIQ_URL": omniq_url,
        "DJANGO_TEST_PROJECT": f"dj-{uuid.uuid4().hex[:8]}",
        "DJANGO_DATA_DIR": str(data_dir),
    }  # fmt: skip
    done = _run(
        [str(python), "manage.py", "test", "shop", "--noinput", "-v", "2"],
        cwd=PROJECT, env=env, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, f"Django's tests failed:\n{done.stdout}\n{done.stderr}"
    assert "\nOK" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_django_on_sqlite(django_python: Path, tmp_path: Path) -> None:
    run_django_tests(django_python, f"sqlite:///{tmp_path}/omniq.db", tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_django_on_postgres(
    django_python: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database = f"dj_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f'CREATE DATABASE "{database}"')
    run_django_tests(django_python, postgres_server.dsn_for(database), tmp_path)
