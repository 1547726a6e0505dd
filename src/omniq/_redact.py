"""Credentials out of everything OmniQ shows: reprs, error messages, log lines, CLI output.

``redact`` takes a URL, a list of URLs joined by commas, a libpq keyword DSN or a whole message
that embeds any of them, and masks what authenticates:

- the password of a URL's user info (``redis://user:***@host:6379/0``, ``redis://:***@host``);
- a NATS token (``nats://***@host:4222``; NATS user info without a colon is a token);
- secret query parameters and keyword values (``?password=***``, ``password=*** host=db``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "is_secret_name", "redact", "redact_value"]

MASK = "***"

_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "nkey", "credential")
_SECRET_NAME = "|".join(rf"\w*{word}\w*" for word in _SECRET_WORDS)
# scheme://user:password@ : the password runs to the last '@' before a path, a query, a space or
# the next URL of a comma-separated list (an unescaped '@' in a password is masked too).
_USERINFO_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][\w+.-]*://[^\s/@:,]*):(?:(?!,[a-zA-Z][\w+.-]*://)[^\s/?#])*@"
)
# nats://token@ or tls://token@
_NATS_TOKEN = re.compile(r"(?P<head>\b(?:nats|tls|wss?)://)[^\s/@:]+@", re.IGNORECASE)
# password=value in a query string or a keyword DSN (quoted values may hold spaces)
_KEYWORD = re.compile(
    rf"(?P<head>\b(?:{_SECRET_NAME})\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every password, token and secret value in it replaced by ``***``."""
    text = _USERINFO_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    text = _NATS_TOKEN.sub(rf"\g<head>{MASK}@", text)
    return _KEYWORD.sub(rf"\g<head>{MASK}", text)


def is_secret_name(name: str) -> bool:
    """Whether an option or setting of this name holds a credential (``password``,
    ``SECRET_KEY``, ``token``...)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_value(name: str, value: Any) -> Any:
    """How to show option ``name``'s value: masked when secret, URLs and lists redacted."""
    if value is None:
        return None
    if is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [redact_value(name, v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    return value
