"""OmniQ configuration usage: the same application configured five ways, and what a mistake
looks like.

1. direct parameters (code);
2. config structs from ``omniq.models``;
3. a dict (``OmniQ.from_dict``);
4. a YAML file (``OmniQ.from_config_file("omniq.yaml")``, the file next to this script);
5. ``OMNIQ_*`` environment variables (``OmniQ.from_env()``);

then a few bad configurations and the ``omniq.ConfigError`` each one raises.

Everything lives in a temporary directory that is removed at the end; the environment variables
set here are restored afterwards.

Run it with ``python config_usage.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from omniq import ConfigError, OmniQ
from omniq.config import Settings
from omniq.models import SQLiteResultStorageConfig, SQLiteTaskQueueConfig, WorkerConfig
from omniq.queue import SQLiteTaskQueue
from omniq.storage import SQLiteResultStorage
from omniq.workers import ThreadPoolWorker

YAML_FILE = Path(__file__).resolve().parent / "omniq.yaml"


# --- task functions: module-level, sync or async ---------------------------------------------


def apply_discount(price: float, percent: float) -> float:
    """A sync task."""
    return round(price * (1 - percent / 100), 2)


async def shout(text: str) -> str:
    """An async task."""
    await asyncio.sleep(0.01)
    return f"{text.upper()}!"


def run_tasks(oq: OmniQ, queue_name: str = "default") -> list[str]:
    """Start the facade's worker, run two tasks, print their results, stop the worker."""
    oq.start_worker()
    try:
        discount = oq.enqueue(
            apply_discount, func_args={"price": 80.0, "percent": 25}, queue_name=queue_name
        )
        greeting = oq.enqueue(shout, func_args={"text": "hello"}, queue_name=queue_name)
        print(
            f"   apply_discount(80.0, 25) -> {oq.get_result(discount, wait=True, timeout=10).value}"
        )
        print(f"   shout('hello') -> {oq.get_result(greeting, wait=True, timeout=10).value!r}")
    finally:
        oq.stop_worker()
    return [discount, greeting]


# --- 1. direct parameters --------------------------------------------------------------------


def direct_parameters(data_dir: str) -> None:
    print("\n1. Direct parameters")
    db_path = os.path.join(data_dir, "direct.db")
    # Settings hold the defaults of everything that is not given: here, tasks get no retries.
    settings = Settings(RETRY_ATTEMPTS=0, RESULT_TTL=3600)
    queue = SQLiteTaskQueue(
        project_name="direct", db_path=db_path, queues=["high", "low"], settings=settings
    )
    results = SQLiteResultStorage(project_name="direct", db_path=db_path)
    # No event_store: no events are logged.
    with OmniQ(
        task_queue=queue,
        result_store=results,
        worker="thread_pool",
        worker_config={"max_workers": 2},
        settings=settings,
    ) as oq:
        print(f"   task queue serving {queue.queues}")
        task_ids = run_tasks(oq, queue_name="high")
        retries = oq.get_task(task_ids[0]).max_retries
        print(f"   max_retries of a task, from the settings: {retries}")


# --- 2. config structs -----------------------------------------------------------------------


def config_structs(data_dir: str) -> None:
    print("\n2. Config structs (omniq.models)")
    # Typed, immutable and checked by your type checker; each component has its own struct.
    queue_config = SQLiteTaskQueueConfig(project_name="structs", base_dir=data_dir, queues=["low"])
    results_config = SQLiteResultStorageConfig(project_name="structs", base_dir=data_dir)
    worker_config = WorkerConfig(max_workers=2, poll_interval=0.1)
    print(f"   {queue_config!r}")
    print(f"   {worker_config!r}")

    with (
        SQLiteTaskQueue.from_config(queue_config) as queue,
        SQLiteResultStorage.from_config(results_config) as results,
    ):
        # Arguments outside the struct (the components to work on) are passed alongside it.
        worker = ThreadPoolWorker.from_config(worker_config, queue=queue, result_store=results)
        task_id = queue.enqueue(apply_discount, {"price": 10.0, "percent": 50}, queue_name="low")
        worker.start()
        try:
            print(f"   apply_discount(10.0, 50) -> {worker.get_result(task_id, timeout=10).value}")
        finally:
            worker.stop()


# --- 3. a dict -------------------------------------------------------------------------------


def from_a_dict(data_dir: str) -> None:
    print("\n3. A dict (the same shape as the YAML file)")
    config = {
        "project_name": "from_dict",
        "base_dir": data_dir,  # for every component that takes a base_dir and names none
        "task_queue": {"type": "sqlite", "config": {"queues": ["high", "low"]}},
        "result_store": {"type": "sqlite"},
        "event_store": {"type": "memory"},
        "worker": {"type": "async", "config": {"max_workers": 8}},
    }
    with OmniQ.from_dict(config) as oq:
        print(f"   worker type: {oq.worker_class.__name__}, options {oq.worker_config}")
        run_tasks(oq, queue_name="low")


# --- 4. a YAML file --------------------------------------------------------------------------


def from_a_yaml_file(data_dir: str) -> None:
    print(f"\n4. A YAML file ({YAML_FILE.name}, needs PyYAML: pip install 'omniq[yaml]')")
    # The paths in omniq.yaml are relative (./omniq_data/...), so they resolve against the
    # working directory. Run it from a scratch directory, as an application would run from its
    # own, so that nothing is written next to this script.
    app_dir = os.path.join(data_dir, "yaml-app")
    os.makedirs(app_dir)
    shutil.copy(YAML_FILE, app_dir)
    with contextlib.chdir(app_dir), OmniQ.from_config_file("omniq.yaml") as oq:
        print(f"   project {oq.project_name!r}, worker options {oq.worker_config}")
        run_tasks(oq, queue_name="high")
        events = oq.get_events(event_type="complete")
        print(f"   'complete' events logged: {len(events)}")
        written = sorted(
            name for name in os.listdir("omniq_data") if not name.endswith(("-wal", "-shm"))
        )
        print(f"   written under ./omniq_data: {', '.join(written)}")


# --- 5. environment variables ----------------------------------------------------------------


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def from_environment(data_dir: str) -> None:
    print("\n5. Environment variables (OMNIQ_*)")
    db_url = f"sqlite:///{os.path.join(data_dir, 'env.db')}"
    # In production these come from the shell, a .env file, Docker or Kubernetes.
    variables = {
        "OMNIQ_PROJECT_NAME": "from_env",
        "OMNIQ_BASE_DIR": data_dir,
        "OMNIQ_TASK_QUEUE_URL": db_url,
        "OMNIQ_RESULT_STORAGE_URL": db_url,
        "OMNIQ_EVENT_STORAGE_URL": db_url,
        "OMNIQ_DEFAULT_WORKER": "async",
        "OMNIQ_MAX_WORKERS": "4",
        "OMNIQ_RETRY_ATTEMPTS": "1",
    }
    for name, value in variables.items():
        print(f"   {name}={value}")
    with environment(**variables), OmniQ.from_env() as oq:
        print(
            f"   -> project {oq.project_name!r}, worker {oq.worker_class.__name__}, "
            f"options {oq.worker_config}"
        )
        task_ids = run_tasks(oq)
        retries = oq.get_task(task_ids[0]).max_retries
        print(f"   max_retries of a task, from OMNIQ_RETRY_ATTEMPTS: {retries}")


# --- 6. bad configurations -------------------------------------------------------------------


def show_error(what: str, build: Callable[[], object]) -> None:
    """Build something from a bad configuration and print the ConfigError it raises."""
    print(f"   {what}")
    try:
        built = build()
    except ConfigError as exc:
        print(f"     ConfigError: {exc}")
    else:
        built.close()
        print("     (no error)")


def bad_configurations(data_dir: str) -> None:
    print("\n6. Bad configurations fail at construction, naming the field")
    base = {"project_name": "broken", "base_dir": data_dir}

    show_error(
        "a misspelt section: {'task_queu': ...}",
        lambda: OmniQ.from_dict({**base, "task_queu": {"type": "sqlite"}}),
    )
    show_error(
        "a misspelt option: {'config': {'queue': [...]}}",
        lambda: OmniQ.from_dict(
            {**base, "task_queue": {"type": "sqlite", "config": {"queue": []}}}
        ),
    )
    show_error(
        "an unknown backend type: {'type': 'sqllite'}",
        lambda: OmniQ.from_dict({**base, "task_queue": {"type": "sqllite"}}),
    )
    show_error(
        "an unknown worker type: {'worker': {'type': 'threads'}}",
        lambda: OmniQ.from_dict({**base, "worker": {"type": "threads"}}),
    )
    show_error(
        "a bad value: {'queues': 'high'} (a string, not a list)",
        lambda: OmniQ.from_dict(
            {**base, "task_queue": {"type": "sqlite", "config": {"queues": "high"}}}
        ),
    )
    show_error(
        "a URL that cannot work: sqlite:///:memory:",
        lambda: OmniQ.from_dict({**base, "result_store": {"url": "sqlite:///:memory:"}}),
    )

    broken_yaml = os.path.join(data_dir, "broken.yaml")
    with open(broken_yaml, "w", encoding="utf-8") as handle:
        handle.write("task_queue:\n  type: sqlite\n   config: {}\n")  # one space too many
    show_error(
        "a YAML file with a wrong indentation",
        lambda: OmniQ.from_config_file(broken_yaml),
    )

    safe_dirs = {"OMNIQ_BASE_DIR": data_dir}
    with environment(**safe_dirs, OMNIQ_SECRET_KEY=""):
        show_error("an empty key: OMNIQ_SECRET_KEY=", OmniQ.from_env)
    with environment(**safe_dirs, OMNIQ_MAX_WORKERS="lots"):
        show_error("a bad value: OMNIQ_MAX_WORKERS=lots", OmniQ.from_env)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="omniq-config-") as data_dir:
        print(f"OmniQ configuration usage (data in {data_dir})")
        direct_parameters(data_dir)
        config_structs(data_dir)
        from_a_dict(data_dir)
        from_a_yaml_file(data_dir)
        from_environment(data_dir)
        bad_configurations(data_dir)
    print("\nDone.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
