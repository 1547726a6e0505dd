"""Configuration: settings from the environment, URLs, dicts, YAML, config structs, backends."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import taskfns
from conftest import wait_until_sync

import omniq.config
from omniq import OmniQ, ResultStore, TaskQueue
from omniq.backend import FileBackend, MemoryBackend, SQLiteBackend
from omniq.config import Settings
from omniq.errors import ConfigError
from omniq.logs import configure_logging
from omniq.models import SQLiteTaskQueueConfig, TaskStatus
from omniq.queue import AsyncSQLiteTaskQueue, MemoryTaskQueue, SQLiteTaskQueue
from omniq.storage import AsyncMemoryEventStorage, SQLiteResultStorage
from omniq.urls import parse_url

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_settings_read_and_convert_the_environment() -> None:
    env = {
        "OMNIQ_MAX_WORKERS": "4",
        "OMNIQ_TASK_TTL": "none",
        "OMNIQ_ALLOW_PICKLE": "false",
        "OMNIQ_COMPONENT_LOG_LEVELS": '{"worker": "debug"}',
        "OMNIQ_RETRY_DELAY": "0.5",
        "PATH": "/bin",
    }
    settings = Settings.from_env(env)
    assert settings.MAX_WORKERS == 4 and settings.TASK_TTL is None
    assert settings.ALLOW_PICKLE is False and settings.RETRY_DELAY == 0.5
    assert settings.COMPONENT_LOG_LEVELS == {"worker": "debug"}
    assert Settings.from_env({}, MAX_WORKERS=2).MAX_WORKERS == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OMNIQ_MAX_WORKERS": "many"}, "OMNIQ_MAX_WORKERS='many': Expected `int`"),
        ({"OMNIQ_MAX_WORKERS": "0"}, "MAX_WORKERS must be a finite number > 0"),
        ({"OMNIQ_LEASE_TIMEOUT": "nan"}, "LEASE_TIMEOUT must be a finite number > 0"),
        ({"OMNIQ_POLL_INTERVAL": "inf"}, "POLL_INTERVAL must be a finite number > 0"),
        ({"OMNIQ_RETRY_DELAY": "nan"}, "RETRY_DELAY must be a finite number >= 0"),
        ({"OMNIQ_TASK_TIMEOUT": "nan"}, "TASK_TIMEOUT must be a finite number of seconds"),
        ({"OMNIQ_TASK_TTL": "inf"}, "TASK_TTL must be a finite number of seconds"),
        ({"OMNIQ_RESULT_TTL": "-inf"}, "RESULT_TTL must be a finite number of seconds"),
        ({"OMNIQ_EVENT_RETENTION": "nan"}, "EVENT_RETENTION must be a finite number"),
        ({"OMNIQ_MAX_PAYLOAD_SIZE": "0"}, "MAX_PAYLOAD_SIZE must be a finite number > 0"),
        ({"OMNIQ_SECRET_KEY": ""}, "OMNIQ_SECRET_KEY is set but empty"),
        ({"OMNIQ_SECRET_KEY": "  "}, "OMNIQ_SECRET_KEY is set but empty"),
        ({"OMNIQ_SECRET_KEY": "null"}, "OMNIQ_SECRET_KEY is set but empty"),
        ({"OMNIQ_LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD' is not one of"),
        ({"OMNIQ_COMPONENT_LOG_LEVELS": "{bad"}, "invalid JSON"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_nonsense_settings_in_code_are_refused() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY is empty or blank"):
        Settings(SECRET_KEY="")
    with pytest.raises(ConfigError, match="LEASE_TIMEOUT must be a finite number"):
        Settings(LEASE_TIMEOUT=float("nan"))
    assert Settings.from_env({"OMNIQ_SECRET_KEY": " k3y "}).SECRET_KEY == "k3y"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lease_timeout": float("nan")}, "lease_timeout"),
        ({"poll_interval": float("inf")}, "poll_interval"),
        ({"max_workers": float("inf")}, "max_workers"),
    ],
)
def test_nonsense_worker_options_are_refused(options: dict, field: str) -> None:
    from omniq.models import WorkerConfig
    from omniq.queue import AsyncMemoryTaskQueue
    from omniq.workers import AsyncWorker

    queue = AsyncMemoryTaskQueue()
    for build in (
        lambda: AsyncWorker(queue=queue, **options),
        lambda: AsyncWorker.from_config(WorkerConfig(**options), queue=queue),
    ):
        with pytest.raises(ConfigError, match=f"^{field} must be a (finite|positive) number"):
            build()


def test_unknown_variables_warn_once_and_are_ignored(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other tools share the OMNIQ_ prefix: an unknown variable is a warning, not an error."""
    monkeypatch.setattr(omniq.config, "_warned", set())
    env = {"OMNIQ_MAX_WORKER": "3", "OMNIQ_DEPLOY_TAG": "blue"}
    with caplog.at_level(logging.WARNING, logger="omniq.config"):
        assert Settings.from_env(env) == Settings()
        assert Settings.from_env(env) == Settings()
    messages = [r.getMessage() for r in caplog.records if r.name == "omniq.config"]
    assert len(messages) == 2
    assert "OMNIQ_MAX_WORKER (did you mean OMNIQ_MAX_WORKERS?)" in messages[0]
    assert "OMNIQ_DEPLOY_TAG" in messages[1]
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({}, MAX_WORKER=3)


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in Settings.__struct_fields__ if f"`{name}`" not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("url", "kind", "options"),
    [
        ("memory://", "memory", {}),
        ("memory://shared", "file", {"base_dir": "memory://shared"}),
        ("file:///var/omniq", "file", {"base_dir": "/var/omniq"}),
        ("s3://bucket/prefix", "file", {"base_dir": "s3://bucket/prefix"}),
        ("sqlite:///omniq.db", "sqlite", {"db_path": "omniq.db"}),
        ("sqlite:////var/omniq.db", "sqlite", {"db_path": "/var/omniq.db"}),
        ("postgresql://u:p@db/app", "postgres", {"dsn": "postgresql://u:p@db/app"}),
        ("redis://cache:6379/1", "redis", {"url": "redis://cache:6379/1"}),
        ("nats://a:4222,nats://b:4222", "nats", {"servers": ["nats://a:4222", "nats://b:4222"]}),
    ],
)
def test_urls_map_to_backends(url: str, kind: str, options: dict) -> None:
    assert parse_url(url) == (kind, options)


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported URL scheme 'ftp'"):
        parse_url("ftp://x")
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        parse_url("sqlite:///:memory:")


def test_components_from_struct_dict_and_yaml(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    by_struct = AsyncSQLiteTaskQueue.from_config(
        SQLiteTaskQueueConfig(db_path=db, queues=["a", "b"])
    )
    assert by_struct.queues == ["a", "b"] and by_struct.db_path == db
    with SQLiteTaskQueue.from_dict({"db_path": db, "queues": ["a"], "project_name": "x"}) as queue:
        assert queue.project_name == "x"
        queue.enqueue(taskfns.noop, queue_name="a")
        assert queue.count() == 1
    config = tmp_path / "queue.yaml"
    config.write_text(f"type: sqlite\nconfig:\n  db_path: {db}\n  project_name: x\n")
    with SQLiteTaskQueue.from_config_file(config) as queue:
        assert queue.count() == 1


def test_misspelt_and_bad_options_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'db_pth' \(did you mean 'db_path'\?\)"):
        SQLiteTaskQueue.from_dict({"db_pth": "x.db"})
    with pytest.raises(ConfigError, match=r"queues=5: Expected `array"):
        SQLiteTaskQueue.from_dict({"queues": 5})
    with pytest.raises(ConfigError, match="expects a SQLiteTaskQueueConfig"):
        AsyncSQLiteTaskQueue.from_config(object())  # type: ignore[arg-type]
    broken = tmp_path / "broken.yaml"
    broken.write_text("type: sqlite\nconfig:\n  db_path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: YAML error at line 4"):
        SQLiteTaskQueue.from_config_file(broken)


def test_backends_build_all_three_components(tmp_path: Path) -> None:
    backend = SQLiteBackend(project_name="b", db_path=tmp_path / "b.db")
    with (
        TaskQueue.from_backend(backend, queues=["high", "low"]) as queue,
        ResultStore.from_backend(backend) as results,
    ):
        assert isinstance(queue, SQLiteTaskQueue) and queue.queues == ["high", "low"]
        assert isinstance(results, SQLiteResultStorage) and results.project_name == "b"
    assert isinstance(MemoryBackend().event_store(), AsyncMemoryEventStorage)
    assert FileBackend(base_dir=str(tmp_path / "files")).has_event_store
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        SQLiteBackend(db_path="x.db").task_queue(colour="red")


def test_facade_from_backend_mixes_backends(tmp_path: Path) -> None:
    queue_backend = MemoryBackend(project_name="mix")
    results_backend = SQLiteBackend(project_name="mix", db_path=tmp_path / "r.db")
    with OmniQ.from_backend(
        queue_backend,
        result_store_backend=results_backend,
        worker_type="async",
        worker_config={"max_workers": 2},
    ) as oq:
        oq.start_worker()
        task_id = oq.enqueue(taskfns.add, args=(2, 2))
        assert oq.get_result(task_id, wait=True, timeout=10).unwrap() == 4
    with SQLiteResultStorage(project_name="mix", db_path=tmp_path / "r.db") as results:
        assert results.get(task_id).value == 4


def test_facade_from_yaml_file(tmp_path: Path) -> None:
    config = tmp_path / "omniq.yaml"
    config.write_text(
        f"""
project_name: yaml-app
task_queue:
  type: file
  config:
    base_dir: {tmp_path / "files"}
    queues: [high, low]
result_store:
  url: sqlite:///{tmp_path / "results.db"}
event_store:
  type: none
worker:
  type: thread_pool
  config:
    max_workers: 2
"""
    )
    with OmniQ.from_config_file(str(config)) as oq:
        oq.start_worker()
        task_id = oq.enqueue(taskfns.add, args=(1, 1), queue_name="low")
        assert oq.get_result(task_id, wait=True, timeout=10).unwrap() == 2
        assert oq.get_events(task_id=task_id) == []
        # The result is stored before the task is marked done (in another store here).
        wait_until_sync(lambda: oq.count(status=TaskStatus.SUCCESS) == 1, timeout=10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"task_queu": {}}, r"unknown key task_queu .did you mean .task_queue."),
        (
            {"task_queue": {"type": "sqllite"}},
            r"task_queue.type: unknown backend type 'sqllite' \(did you mean 'sqlite'\?\)",
        ),
        (
            {"task_queue": {"type": "memory", "config": {"base_dir": "x"}}},
            r"unknown option 'base_dir'",
        ),
        ({"worker": {"type": "fibers"}}, r"worker.type: unknown worker type 'fibers'"),
        (
            {
                "task_queue": {"type": "memory"},
                "result_store": {"type": "memory"},
                "event_store": {"type": "redis"},
            },
            r"event_store.type: the redis backend has no event storage",
        ),
    ],
)
def test_bad_facade_configuration_fails_at_construction(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OmniQ.from_dict(data)


def test_facade_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIQ_TASK_QUEUE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("OMNIQ_RESULT_STORAGE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("OMNIQ_EVENT_STORAGE_TYPE", "memory")
    monkeypatch.setenv("OMNIQ_DEFAULT_WORKER", "async")
    monkeypatch.setenv("OMNIQ_MAX_WORKERS", "3")
    monkeypatch.setenv("OMNIQ_PROJECT_NAME", "envapp")
    monkeypatch.setenv("OMNIQ_DEPLOY_TAG", "blue")  # another tool's variable: ignored
    with OmniQ.from_env() as oq:
        assert oq.worker_config == {"max_workers": 3}
        oq.start_worker()
        task_id = oq.enqueue(taskfns.add, args=(3, 3))
        assert oq.get_result(task_id, wait=True, timeout=10).unwrap() == 6
    with SQLiteTaskQueue(project_name="envapp", db_path=tmp_path / "env.db") as queue:
        assert queue.count(status="success") == 1


def test_logging_levels_come_from_settings() -> None:
    configure_logging(Settings(LOG_LEVEL="ERROR", COMPONENT_LOG_LEVELS={"worker": "DEBUG"}))
    try:
        assert logging.getLogger("omniq").level == logging.ERROR
        assert logging.getLogger("omniq.worker").level == logging.DEBUG
        assert logging.getLogger("omniq").handlers == []
    finally:
        configure_logging(Settings())
        logging.getLogger("omniq.worker").setLevel(logging.NOTSET)


def test_memory_queue_from_config_struct() -> None:
    from omniq.models import MemoryTaskQueueConfig

    queue = MemoryTaskQueue.from_config(MemoryTaskQueueConfig(project_name="m", queues=["a"]))
    assert queue.queues == ["a"] and queue.project_name == "m"


def _components_and_configs() -> list[tuple[type, type]]:
    """Every component class beside its config struct (in its module or in omniq.models)."""
    import sys

    import omniq.models
    import omniq.queue
    import omniq.storage

    pairs = []
    for module in (omniq.queue, omniq.storage):
        for name in module.__all__:
            cls = getattr(module, name)
            config_name = name.removeprefix("Async") + "Config"
            config = getattr(sys.modules[cls.__module__], config_name, None)
            config = config or getattr(omniq.models, config_name, None)
            if name.startswith("Async") and config is not None:
                pairs.append((cls, config))
    return pairs


@pytest.mark.parametrize(
    ("cls", "config"), _components_and_configs(), ids=lambda c: getattr(c, "__name__", "")
)
async def test_project_name_defaults_to_the_setting(
    cls: type, config: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given OMNIQ_PROJECT_NAME, every component from its default struct or constructor uses it."""
    monkeypatch.setenv("OMNIQ_PROJECT_NAME", "from-env")
    monkeypatch.setenv("OMNIQ_BASE_DIR", str(tmp_path))
    assert config().project_name is None
    for component in (cls.from_config(config()), cls()):
        assert component.project_name == "from-env"
        await component.close()
