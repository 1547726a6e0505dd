"""The ``omniq`` command: a thin layer over the public API (needs ``omniq[cli]``)."""

from omniq.cli.main import cli, main

__all__ = ["cli", "main"]
