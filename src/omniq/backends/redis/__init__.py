"""What the Redis task queue and result storage share.

- :mod:`.keys`: the key layout (every key and channel, documented at its top).
- :mod:`.client`: the client factory (lazy connect, retries), the Lua scripts of
  this package (``*.lua``, each opening with the keys it touches; task scripts share
  ``_lib.lua``), driver-error translation and the pub/sub listener.
- :mod:`.codec`: task records to hash fields and back.
"""

from __future__ import annotations

from typing import Any

from omniq.registry import builtin_entry


def _url_options(url: str, field: str) -> tuple[str, dict[str, Any]]:
    return "redis", {"url": url}


ENTRY = builtin_entry(
    "redis",
    "Redis",
    events=False,
    extra="redis",
    schemes=("redis", "rediss", "unix"),
    url_options=_url_options,
)
