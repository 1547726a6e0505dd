"""Settings: the one table of defaults, each overridable by an ``OMNIQ_``-prefixed variable.

Every field is documented in ``docs/configuration.md`` (a test keeps the two in step).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from omniq._redact import redact_value
from omniq.errors import ConfigError

__all__ = ["Settings", "get_settings"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PREFIX = "OMNIQ_"
logger = logging.getLogger("omniq.config")
_warned: set[str] = set()  # unknown variables already reported by this process
_SECRET = f"{_PREFIX}SECRET_KEY"
_OCTAL = (f"{_PREFIX}FILE_MODE", f"{_PREFIX}DIR_MODE")  # written as chmod takes them: 0640


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Library-wide defaults. ``Settings.from_env()`` applies ``OMNIQ_<FIELD>`` variables."""

    BASE_DIR: str = "./omniq_data"
    FILE_MODE: int = 0o600
    DIR_MODE: int = 0o700
    PROJECT_NAME: str = "default"
    TASK_QUEUE_TYPE: str = "sqlite"
    TASK_QUEUE_URL: str | None = None
    RESULT_STORAGE_TYPE: str | None = "sqlite"
    RESULT_STORAGE_URL: str | None = None
    EVENT_STORAGE_TYPE: str | None = "sqlite"
    EVENT_STORAGE_URL: str | None = None
    DEFAULT_WORKER: str = "thread_pool"
    MAX_WORKERS: int = 10
    TASK_TIMEOUT: float | None = None
    TASK_TTL: float | None = None
    RESULT_TTL: float | None = 86400.0
    RETRY_ATTEMPTS: int = 3
    RETRY_DELAY: float = 1.0
    MAX_PAYLOAD_SIZE: int = 64 * 1024 * 1024
    EVENT_RETENTION: float | None = 604800.0
    LEASE_TIMEOUT: float = 30.0
    POLL_INTERVAL: float = 0.5
    SECRET_KEY: str | None = None
    ALLOW_PICKLE: bool = True
    ALLOWED_FUNCTIONS: list[str] | str | None = None
    LOG_LEVEL: str = "WARNING"
    COMPONENT_LOG_LEVELS: dict[str, str] = {}
    DISABLE_LOGGING: bool = False

    def __post_init__(self) -> None:
        # NaN and infinity pass a "<= 0" check, and a NaN lease makes a worker spin.
        for name in ("MAX_WORKERS", "LEASE_TIMEOUT", "POLL_INTERVAL", "MAX_PAYLOAD_SIZE"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("TASK_TIMEOUT", "TASK_TTL", "RESULT_TTL", "EVENT_RETENTION"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ConfigError(
                    f"{name} must be a finite number of seconds > 0 (or unset), got {value!r}"
                )
        for name in ("RETRY_ATTEMPTS", "RETRY_DELAY"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, owner in (("FILE_MODE", 0o600), ("DIR_MODE", 0o700)):
            value = getattr(self, name)
            if not 0 <= value <= 0o777 or value & owner != owner:
                raise ConfigError(
                    f"{name} must be permission bits from {owner:#o} to 0o777 that keep the "
                    f"owner's access ({owner:#o}), got {value:#o}"
                )
        if self.SECRET_KEY is not None and not self.SECRET_KEY.strip():
            raise ConfigError(
                "SECRET_KEY is empty or blank; set a real key, or leave it unset for no key"
            )
        levels = {
            "LOG_LEVEL": self.LOG_LEVEL,
            **{f"COMPONENT_LOG_LEVELS[{k!r}]": v for k, v in self.COMPONENT_LOG_LEVELS.items()},
        }
        for name, level in levels.items():
            if level.upper() not in _LOG_LEVELS:
                raise ConfigError(f"{name}={level!r} is not one of {list(_LOG_LEVELS)}")

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={redact_value(name, getattr(self, name))!r}" for name in self.__struct_fields__
        )
        return f"Settings({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(name, redact_value(name, getattr(self, name))) for name in self.__struct_fields__]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``OMNIQ_*`` variables, then ``overrides``; values are validated."""
        environ = os.environ if environ is None else environ
        fields = cls.__struct_fields__
        raw: dict[str, Any] = {}
        for variable, value in environ.items():
            if not variable.startswith(_PREFIX):
                continue
            name = variable[len(_PREFIX) :]
            if name not in fields:
                _warn_unknown(variable, fields)
                continue
            raw[name] = _parse(variable, value)
        raw.update(overrides)
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {list(fields)}")
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(exc, raw)) from exc


def _warn_unknown(variable: str, fields: tuple[str, ...]) -> None:
    # Deploy scripts and test harnesses use the prefix too, so an unknown name is only a hint.
    if variable in _warned:
        return
    _warned.add(variable)
    close = difflib.get_close_matches(variable[len(_PREFIX) :], fields, n=1)
    hint = f" (did you mean {_PREFIX}{close[0]}?)" if close else ""
    logger.warning("ignoring unknown setting %s%s; see docs/configuration.md", variable, hint)


def _parse(variable: str, value: str) -> Any:
    text = value.strip()
    if variable == _SECRET:
        # Only an unset variable means "no key": an empty one is a deploy mistake, not a choice.
        if text.lower() in ("", "none", "null"):
            raise ConfigError(
                f"{variable} is set but empty ({value!r}); give a key, or unset it for no key"
            )
        return text
    if text.lower() in ("", "none", "null"):
        return None
    if variable in _OCTAL:
        try:
            return int(text.removeprefix("0o"), 8)
        except ValueError as exc:
            raise ConfigError(f"{variable}={value!r}: expected octal permission bits") from exc
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{variable}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
    return text


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    message = str(exc)
    field = message.rsplit("$.", 1)[-1].strip("`").split("[")[0] if "$." in message else ""
    if field in raw:
        return f"{_PREFIX}{field}={redact_value(field, raw[field])!r}: {message.split(' - at ')[0]}"
    return f"invalid setting: {message}"


def get_settings() -> Settings:
    """The settings in force now (environment read at each call; cheap)."""
    return Settings.from_env()
