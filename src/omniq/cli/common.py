"""What every ``omniq`` subcommand shares: the options accepted before and after the command
name, the configured facade, one-line errors and the output of a state change."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from omniq import OmniQ
from omniq.cli.output import emit_json

__all__ = ["CommandError", "State", "done", "log_handler", "one_line", "shared_options"]

_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

log_handler = logging.StreamHandler(sys.stderr)
log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


class CommandError(click.ClickException):
    """An expected failure: one line on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"omniq: error: {one_line(self.message)}", err=True)


def one_line(message: object) -> str:
    return " ".join(str(message).split())


class State:
    """Options shared by every command; opens the configured facade when a command needs it."""

    def __init__(self) -> None:
        self.config: str | None = None
        self.as_json = False
        self.log_level = "INFO"

    def open(self, worker_type: str | None = None, **worker_options: Any) -> OmniQ:
        """The configured facade; ``worker_type`` and ``worker_options`` override its worker."""
        oq = self.configured()
        if worker_type is not None or worker_options:
            # The same components, with the command line's worker options over the configured
            # ones (validated again by the facade).
            oq = OmniQ(
                project_name=oq.project_name,
                task_queue=oq.task_queue,
                result_store=oq.result_store,
                event_store=oq.event_store or False,
                worker=worker_type or oq.worker_class,
                worker_config={**oq.worker_config, **worker_options},
                settings=oq.settings,
            )
        # Building the facade applied the settings' LOG_LEVEL to the ``omniq`` logger.
        set_log_level(self.log_level, disabled=oq.settings.DISABLE_LOGGING)
        return oq

    def configured(self) -> OmniQ:
        """The facade ``--config`` (else the ``OMNIQ_*`` variables) describes; integrations
        that configure OmniQ otherwise (Django's settings) override this."""
        return OmniQ.from_config_file(self.config) if self.config else OmniQ.from_env()


def set_log_level(level: str, *, disabled: bool = False) -> None:
    logging.getLogger("omniq").setLevel(level.upper())
    # DISABLE_LOGGING silences the whole tree here, children included.
    log_handler.setLevel(logging.CRITICAL + 1 if disabled else logging.NOTSET)


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False:
            return  # not given here: keep what the group (or the default) said
        source = ctx.get_parameter_source(param.name or "")
        if ctx.parent is not None and source is not ParameterSource.COMMANDLINE:
            return  # after the command name only an explicit flag overrides (not OMNIQ_LOG_LEVEL)
        setattr(ctx.ensure_object(State), name, value)
        if name == "log_level":
            set_log_level(value)

    return store


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options accepted before and after the command name (``omniq --json tasks`` and
    ``omniq tasks --json``)."""
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_remember("config"),
            help="YAML configuration file [default: the OMNIQ_* variables, else the embedded "
            "SQLite database under ./omniq_data].",
        ),
        click.option(
            "--json",
            is_flag=True,
            expose_value=False,
            callback=_remember("as_json"),
            help="Print JSON for scripts instead of tables.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(_LEVELS, case_sensitive=False),
            envvar="OMNIQ_LOG_LEVEL",
            show_envvar=True,
            expose_value=False,
            callback=_remember("log_level"),
            help="Level of the omniq log records written to stderr [default: INFO].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def done(state: State, data: dict[str, Any], text: str) -> None:
    if state.as_json:
        emit_json(data)
    else:
        click.echo(text)
