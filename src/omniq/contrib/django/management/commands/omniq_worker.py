"""``python manage.py omniq_worker [--backend ALIAS] [omniq worker's options]``: an OmniQ worker
for the ``TASKS`` backend ``ALIAS`` (default ``default``), after Django's setup."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from omniq import OmniQ
from omniq.cli.common import State, log_handler
from omniq.cli.main import worker
from omniq.contrib.django.config import build_omniq, options_of
from omniq.errors import ConfigError

__all__ = ["Command"]

_BACKEND = "--backend"


class DjangoState(State):
    """``omniq worker``'s state with the facade from Django's ``TASKS`` setting (unless
    ``--config`` names a file)."""

    def __init__(self, alias: str) -> None:
        super().__init__()
        self.alias = alias

    def configured(self) -> OmniQ:
        if self.config:
            return super().configured()
        return build_omniq(options_of(self.alias))


class Command(BaseCommand):
    help = "Run an OmniQ worker for Django's tasks (the options of `omniq worker`, plus --backend)."

    def run_from_argv(self, argv: list[str]) -> None:
        # manage.py has run Django's setup. The options are `omniq worker`'s own, parsed by its
        # click command rather than copied into argparse.
        if {"-h", "--help"} & set(argv[2:]):
            self.print_help(os.path.basename(argv[0]), argv[1])
            return
        try:
            alias, rest = _split_backend(argv[2:])
            options_of(alias)  # an unknown alias is one line, before the worker starts
        except (CommandError, ConfigError) as exc:
            self.stderr.write(f"omniq: error: {exc}")
            sys.exit(1)
        root = logging.getLogger("omniq")
        if log_handler not in root.handlers:
            root.addHandler(log_handler)
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        worker.main(rest, prog_name=prog, obj=DjangoState(alias))

    def print_help(self, prog_name: str, subcommand: str) -> None:
        self.stdout.write(
            f"{_BACKEND} ALIAS  the TASKS backend whose OPTIONS configure OmniQ [default: default]"
        )
        worker.main(["--help"], prog_name=f"{prog_name} {subcommand}", standalone_mode=False)

    def handle(self, *args: Any, **options: Any) -> None:
        raise CommandError("run it from the command line: python manage.py omniq_worker")


def _split_backend(args: Sequence[str]) -> tuple[str, list[str]]:
    """``--backend ALIAS`` (or ``--backend=ALIAS``) taken out of the worker's options."""
    alias, rest, items = "default", [], iter(args)
    for arg in items:
        if arg == _BACKEND:
            alias = next(items, None) or _missing()
        elif arg.startswith(f"{_BACKEND}="):
            alias = arg.split("=", 1)[1] or _missing()
        else:
            rest.append(arg)
    return alias, rest


def _missing() -> str:
    raise CommandError(f"{_BACKEND} needs a TASKS alias, e.g. {_BACKEND} default")
