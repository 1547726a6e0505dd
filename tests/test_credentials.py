"""No password, token or secret key in any repr, error message or log line (issue 14, item 6)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from omniq import OmniQ
from omniq.backend import NATSBackend, PostgresBackend, RedisBackend
from omniq.config import Settings
from omniq.errors import ConfigError, StorageError
from omniq.queue import (
    AsyncFileTaskQueue,
    AsyncNATSTaskQueue,
    AsyncPostgresTaskQueue,
    AsyncRedisTaskQueue,
    NATSTaskQueue,
    PostgresTaskQueue,
    RedisTaskQueue,
)
from omniq.storage import (
    AsyncNATSResultStorage,
    AsyncPostgresEventStorage,
    AsyncPostgresResultStorage,
    AsyncRedisResultStorage,
)
from omniq.urls import parse_url

SECRET = "S3cr3tPw"
REDIS = f"redis://user:{SECRET}@127.0.0.1:1/0"
POSTGRES = f"postgresql://omniq:{SECRET}@127.0.0.1:1/omniq"
NATS = [f"nats://user:{SECRET}@127.0.0.1:1", f"nats://{SECRET}@127.0.0.1:2"]
KEYED = Settings(SECRET_KEY=SECRET, TASK_QUEUE_URL=REDIS)

# Each async component with the connection arguments that carry the secret.
COMPONENTS: list[tuple[type, dict[str, Any]]] = [
    (AsyncRedisTaskQueue, {"url": REDIS}),
    (AsyncRedisTaskQueue, {"url": "redis://127.0.0.1:1/0", "password": SECRET}),
    (AsyncRedisResultStorage, {"url": REDIS}),
    (AsyncPostgresTaskQueue, {"dsn": POSTGRES}),
    (AsyncPostgresTaskQueue, {"host": "127.0.0.1", "port": 1, "password": SECRET}),
    (AsyncPostgresResultStorage, {"dsn": POSTGRES}),
    (AsyncPostgresEventStorage, {"dsn": POSTGRES}),
    (AsyncNATSTaskQueue, {"servers": NATS}),
    (AsyncNATSResultStorage, {"servers": NATS}),
]


def test_settings_and_backends_show_no_secret() -> None:
    shown = [
        repr(KEYED),
        str(KEYED),
        repr(list(KEYED.__rich_repr__())),
        repr(RedisBackend(url=REDIS, settings=KEYED)),
        repr(PostgresBackend(dsn=POSTGRES, settings=KEYED)),
        repr(NATSBackend(servers=NATS, settings=KEYED)),
    ]
    assert all(SECRET not in text for text in shown), shown
    assert "redis://user:***@127.0.0.1:1/0" in shown[0]


@pytest.mark.parametrize(
    ("cls", "options"), COMPONENTS, ids=lambda c: getattr(c, "__name__", None) or "-".join(c)
)
async def test_components_show_no_secret_when_they_fail(
    cls: type, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Given a component with a password, its repr, its connection error and its DEBUG logs
    show none of it."""
    component = cls(project_name="p", **options)
    caplog.set_level(logging.DEBUG)
    try:
        assert SECRET not in repr(component)
        with pytest.raises(StorageError) as failure:
            if hasattr(component, "enqueue"):
                await component.enqueue("os:getcwd")
            elif hasattr(component, "get_events"):
                await component.get_events()
            else:
                await component.get("no-such-task")
    finally:
        await component.close()
    assert SECRET not in str(failure.value)
    assert [r.getMessage() for r in caplog.records if SECRET in r.getMessage()] == []


def test_sync_twins_show_no_secret() -> None:
    for queue in (
        RedisTaskQueue(url=REDIS),
        PostgresTaskQueue(dsn=POSTGRES),
        NATSTaskQueue(servers=NATS),
    ):
        with queue:
            assert SECRET not in repr(queue)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: parse_url(f"ftp://user:{SECRET}@host"), id="url-scheme"),
        pytest.param(lambda: AsyncRedisTaskQueue(url=f"http://u:{SECRET}@h"), id="redis-url"),
        pytest.param(lambda: AsyncPostgresTaskQueue(dsn=f"mysql://u:{SECRET}@h"), id="pg-dsn"),
        pytest.param(
            lambda: OmniQ.from_dict({"task_queue": {"type": "sqlite", "url": REDIS}}),
            id="type-url-mismatch",
        ),
        pytest.param(
            lambda: Settings.from_env({}, SECRET_KEY=b"bytes-" + SECRET.encode()), id="key"
        ),
        pytest.param(lambda: AsyncRedisTaskQueue.from_dict({"password": 12345678}), id="option"),
        pytest.param(
            lambda: AsyncFileTaskQueue(base_dir=f"nosuchproto://u:{SECRET}@h/x"), id="base-dir"
        ),
    ],
)
def test_configuration_errors_show_no_secret(build: Any) -> None:
    with pytest.raises(ConfigError) as failure:
        build()
    assert SECRET not in str(failure.value) and "12345678" not in str(failure.value)
