"""Settings: the one table of defaults, each overridable by an ``OMNIQ_``-prefixed variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from omniq.errors import ConfigError

__all__ = ["Settings", "get_settings"]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Library-wide defaults. ``Settings.from_env()`` applies ``OMNIQ_<FIELD>`` variables."""

    BASE_DIR: str = "./omniq_data"
    PROJECT_NAME: str = "default"
    TASK_QUEUE_TYPE: str = "sqlite"
    TASK_QUEUE_URL: str | None = None
    RESULT_STORAGE_TYPE: str = "sqlite"
    RESULT_STORAGE_URL: str | None = None
    EVENT_STORAGE_TYPE: str = "sqlite"
    EVENT_STORAGE_URL: str | None = None
    DEFAULT_WORKER: str = "thread_pool"
    MAX_WORKERS: int = 10
    TASK_TIMEOUT: float | None = None
    TASK_TTL: float | None = None
    RESULT_TTL: float | None = 86400.0
    RETRY_ATTEMPTS: int = 3
    RETRY_DELAY: float = 1.0
    LEASE_TIMEOUT: float = 30.0
    POLL_INTERVAL: float = 0.5
    SECRET_KEY: str | None = None
    ALLOW_PICKLE: bool = True
    LOG_LEVEL: str = "WARNING"
    DISABLE_LOGGING: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``OMNIQ_*`` variables, then ``overrides``; values are validated."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            value = environ.get(f"OMNIQ_{name}")
            if value is not None:
                raw[name] = None if value.strip().lower() in ("", "none", "null") else value
        raw.update(overrides)
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(
                f"invalid setting: {exc} (from OMNIQ_* environment or overrides)"
            ) from exc


def get_settings() -> Settings:
    """The settings in force now (environment read at each call; cheap)."""
    return Settings.from_env()
