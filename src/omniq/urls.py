"""Storage URLs: one parser shared by environment variables, YAML files and code.

=====================================  ===========  ======================================
URL                                    backend      component arguments
=====================================  ===========  ======================================
``memory://``                          memory       (none)
``file:///var/omniq``, ``/var/omniq``  file         ``base_dir="/var/omniq"``
``s3://bucket/prefix``, ``gs://``,     file         ``base_dir=<the URL>`` (fsspec)
``az://``, ``memory://name``
``sqlite:///path/omniq.db``            sqlite       ``db_path="/path/omniq.db"``
``sqlite:///:memory:``                 (refused: one connection per component)
``postgresql://user:pw@host/db``       postgres     ``dsn=<the URL>``
``redis://host:6379/0``, ``rediss://`` redis        ``url=<the URL>``
``nats://host:4222[,nats://...]``      nats         ``servers=[...]``
=====================================  ===========  ======================================

``sqlite:///relative.db`` is relative to the working directory; ``sqlite:////abs.db`` and
``sqlite:///abs.db`` with a leading slash after the scheme's three are both accepted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from omniq._redact import redact
from omniq.errors import ConfigError

__all__ = ["parse_url"]

_SCHEMES = {
    "memory": "memory",
    "file": "file",
    "s3": "file",
    "s3a": "file",
    "gs": "file",
    "gcs": "file",
    "az": "file",
    "abfs": "file",
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "nats": "nats",
    "tls": "nats",
}


def parse_url(url: str, *, field: str = "url") -> tuple[str, dict[str, Any]]:
    """The backend type and component keyword arguments for a storage URL."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"{field}: expected a storage URL such as 'sqlite:///omniq.db', got {url!r}"
        )
    url = url.strip()
    if "://" not in url:
        return "file", {"base_dir": url}  # a plain path: a directory for the file backend
    scheme = url.split("://", 1)[0].lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ConfigError(
            f"{field}: unsupported URL scheme {scheme!r} in {redact(url)!r}; "
            f"allowed: {sorted(set(_SCHEMES))}"
        )
    if kind == "memory":
        rest = url.split("://", 1)[1]
        return ("file", {"base_dir": url}) if rest.strip("/") else ("memory", {})
    if kind == "file":
        if scheme == "file":
            path = urlsplit(url).path
            if not path:
                raise ConfigError(f"{field}: {url!r} names no directory")
            return "file", {"base_dir": path}
        return "file", {"base_dir": url}
    if kind == "sqlite":
        path = url.split("://", 1)[1]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
        if not path or path == ":memory:":
            raise ConfigError(
                f"{field}: {url!r}: give a database file (sqlite:///path/omniq.db); "
                "in-memory SQLite cannot be shared between components"
            )
        return "sqlite", {"db_path": path}
    if kind == "postgres":
        return "postgres", {"dsn": url}
    if kind == "redis":
        return "redis", {"url": url}
    servers = [part.strip() for part in url.split(",") if part.strip()]
    return "nats", {"servers": servers}
