"""The backend and configuration examples run to completion and print what their READMEs say."""

from __future__ import annotations

from pathlib import Path

from test_examples import EXAMPLES, run_script


def files_of(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_backend_usage_script_runs() -> None:
    script = EXAMPLES / "03_backend_usage" / "backend_usage.py"
    before = files_of(script.parent)
    out = run_script(script)
    # 1. one SQLite backend for the three components
    assert "task queue:     SQLiteTaskQueue" in out
    assert "event storage:  SQLiteEventStorage" in out
    assert "result: 'cat.png resized to 640px'" in out
    assert "result: 99.0" in out
    assert "events of the first task: enqueued, executing, complete" in out
    # 2. mixed backends
    assert "task queue:     FileTaskQueue" in out
    assert "event storage:  MemoryEventStorage" in out
    assert "fetch_price('ACME') -> 12.5" in out
    assert "'complete' events in memory: 3" in out
    assert "read back later from results.db: 'report sent to finance@example.com' (success)" in out
    # 3. components from a backend, named queues in priority order
    assert "SQLiteTaskQueue serving ['high', 'low']" in out
    assert "pending before the worker starts: {'high': 1, 'low': 1}" in out
    first = out.index("1. [high] report sent to ceo@example.com")
    second = out.index("2. [low] report sent to archive@example.com")
    assert first < second
    assert "events of the 'high' task: executing, complete" in out
    assert out.rstrip().endswith("Done.")
    assert files_of(script.parent) == before


def test_config_usage_script_runs() -> None:
    script = EXAMPLES / "04_config_usage" / "config_usage.py"
    before = files_of(script.parent)
    out = run_script(script)
    # The same two tasks ran under each of the five configurations.
    assert out.count("apply_discount(80.0, 25) -> 60.0") == 4
    assert out.count("shout('hello') -> 'HELLO!'") == 4
    assert "apply_discount(10.0, 50) -> 5.0" in out
    assert "max_retries of a task, from the settings: 0" in out
    assert "worker type: AsyncWorker, options {'max_workers': 8}" in out
    # The YAML file: relative paths resolved in the scratch working directory.
    assert "project 'shop', worker options {'max_workers': 4" in out
    assert "'complete' events logged: 2" in out
    assert "written under ./omniq_data: omniq.db, queue, results.db" in out
    # The environment variables.
    assert "-> project 'from_env', worker AsyncWorker, options {'max_workers': 4}" in out
    assert "max_retries of a task, from OMNIQ_RETRY_ATTEMPTS: 1" in out
    # Bad configurations: ConfigError messages naming the field, with a suggestion.
    assert "unknown key task_queu (did you mean 'task_queue'?)" in out
    assert "unknown option 'queue' (did you mean 'queues'?)" in out
    assert "task_queue.type: unknown backend type 'sqllite' (did you mean 'sqlite'?)" in out
    assert "worker.type: unknown worker type 'threads' (did you mean 'thread'?)" in out
    assert "queues='high': Expected `array | null`, got `str`" in out
    assert "result_store.url: 'sqlite:///:memory:': give a database file" in out
    assert "broken.yaml: YAML error at line 3, column 10" in out
    assert "OMNIQ_SECRET_KEY is set but empty ('')" in out
    assert "OMNIQ_MAX_WORKERS='lots': Expected `int`, got `str`" in out
    assert "(no error)" not in out
    assert out.rstrip().endswith("Done.")
    # Nothing written next to the scripts (the YAML file was used from a temporary copy).
    assert files_of(script.parent) == before
    assert not (script.parent / "omniq_data").exists()
