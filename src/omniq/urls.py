"""Storage URLs: one parser shared by environment variables, YAML files and code; each backend
parses the schemes it serves (its ``ENTRY`` in ``omniq/backends/<name>/__init__.py``).

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

from omniq._redact import redact
from omniq.errors import ConfigError
from omniq.registry import backends, url_entry

__all__ = ["parse_url"]


def parse_url(url: str, *, field: str = "url") -> tuple[str, dict[str, Any]]:
    """The backend type and component keyword arguments for a storage URL (the backend serving
    its scheme decides; a plain path is a directory of the file backend)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"{field}: expected a storage URL such as 'sqlite:///omniq.db', got {url!r}"
        )
    url = url.strip()
    if "://" not in url:
        return "file", {"base_dir": url}
    scheme = url.split("://", 1)[0].lower()
    entry = url_entry(scheme)
    if entry is None or entry.url_options is None:
        schemes = sorted({s for e in backends().values() for s in e.schemes})
        raise ConfigError(
            f"{field}: unsupported URL scheme {scheme!r} in {redact(url)!r}; allowed: {schemes}"
        )
    return entry.url_options(url, field)
