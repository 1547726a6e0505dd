"""The gevent worker: greenlets run sync tasks, the loop runs coroutines, timeouts and cancels
kill the greenlet; ``omniq worker --worker-type gevent`` patches the process first.

The tests in this process are not monkey-patched: their tasks cooperate through ``gevent.sleep``.
The command's tests run plain ``time.sleep`` tasks, which cooperate only because it patched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
import pytest
import taskfns
from conftest import wait_until

import omniq
from omniq import OmniQ, TaskStatus
from omniq.errors import MissingDependencyError
from omniq.models import utcnow
from omniq.queue import AsyncMemoryTaskQueue, SQLiteTaskQueue
from omniq.storage import SQLiteResultStorage
from omniq.workers import AsyncGeventWorker, GeventWorker

# --- task functions (this module is importable: tests/ is on sys.path) ------------------------

_arrived: Counter[str] = Counter()


def where() -> dict[str, Any]:
    ctx = omniq.current_task()
    assert ctx is not None
    return {
        "thread": threading.current_thread().name,
        "greenlet": type(gevent.getcurrent()).__name__,
        "task_id": ctx.task_id,
    }


async def async_where() -> dict[str, Any]:
    ctx = omniq.current_task()
    assert ctx is not None
    return {"thread": threading.current_thread().name, "task_id": ctx.task_id}


def returns_coroutine(x: int) -> Any:
    return taskfns.async_add(x, 1)


def rendezvous(key: str, n: int, deadline_s: float = 20.0) -> int | None:
    """Wait until ``n`` calls with this key run at once: only concurrent greenlets get there."""
    _arrived[key] += 1
    deadline = time.monotonic() + deadline_s
    while _arrived[key] < n:
        if time.monotonic() > deadline:
            return None
        gevent.sleep(0.005)
    return threading.get_ident()


def sleep_or_record_kill(marker: str, seconds: float) -> str:
    """Write "started" to ``marker``, sleep cooperatively; a kill writes "killed"."""
    Path(marker).write_text("started")
    try:
        gevent.sleep(seconds)
    except gevent.GreenletExit:
        Path(marker).write_text("killed")
        raise
    Path(marker).write_text("finished")
    return "slept"


# --- fixtures --------------------------------------------------------------------------------


def make_worker(stores: tuple[Any, Any], **options: Any) -> AsyncGeventWorker:
    queue, results = stores
    options.setdefault("poll_interval", 0.05)
    return AsyncGeventWorker(queue=queue, result_store=results, **options)


async def _status_is(queue: Any, task_id: str, status: TaskStatus) -> bool:
    task = await queue.get_task(task_id)
    return task is not None and task.status is status


# --- in this process ---------------------------------------------------------------------------


async def test_sync_tasks_run_in_greenlets_and_coroutines_on_the_loop(stores) -> None:
    queue, results = stores
    async with make_worker(stores, max_workers=4):
        sync_id = await queue.enqueue(where)
        async_id = await queue.enqueue(async_where)
        added = await queue.enqueue(taskfns.add, args=(1, 2))
        by_value = await queue.enqueue(lambda x: x * 10, args=(5,))
        awaited = await queue.enqueue(returns_coroutine, args=(4,))
        failing = await queue.enqueue(taskfns.fail, {"message": "in a greenlet"}, max_retries=0)
        ran = (await results.get(sync_id, wait=True, timeout=10)).unwrap()
        ran_async = (await results.get(async_id, wait=True, timeout=10)).unwrap()
        assert (await results.get(added, wait=True, timeout=10)).unwrap() == 3
        assert (await results.get(by_value, wait=True, timeout=10)).unwrap() == 50
        assert (await results.get(awaited, wait=True, timeout=10)).unwrap() == 5
        failed = await results.get(failing, wait=True, timeout=10)
    assert ran == {"thread": "omniq-gevent", "greenlet": "Greenlet", "task_id": sync_id}
    assert ran_async["task_id"] == async_id and ran_async["thread"] != "omniq-gevent"
    assert failed.status is TaskStatus.FAILED and failed.error.message == "in a greenlet"


async def test_a_greenlet_s_base_exception_fails_only_its_task(stores) -> None:
    queue, results = stores
    async with make_worker(stores, max_workers=2):
        ids = [
            await queue.enqueue(f, max_retries=0)
            for f in (taskfns.exit_now, taskfns.interrupt, taskfns.generator_exit)
        ]
        found = [await results.get(i, wait=True, timeout=10) for i in ids]
        after = await queue.enqueue(taskfns.add, args=(1, 2))
        assert (await results.get(after, wait=True, timeout=10)).unwrap() == 3
    assert [r.error.type for r in found] == ["SystemExit", "KeyboardInterrupt", "GeneratorExit"]
    assert all(r.status is TaskStatus.FAILED for r in found)


async def test_greenlets_wait_at_once_in_one_thread(stores) -> None:
    queue, results = stores
    n = 30
    async with make_worker(stores, max_workers=n):
        ids = [await queue.enqueue(rendezvous, args=("wait-at-once", n)) for _ in range(n)]
        values = [(await results.get(i, wait=True, timeout=30)).unwrap() for i in ids]
    assert None not in values, "some task never saw all the others running"
    assert len(set(values)) == 1 and values[0] != threading.get_ident()


async def test_timeout_kills_the_greenlet_and_the_pool_goes_on(stores, tmp_path: Path) -> None:
    queue, results = stores
    marker = tmp_path / "marker"
    async with make_worker(stores, max_workers=1):
        slow = await queue.enqueue(
            sleep_or_record_kill, args=(str(marker), 30), timeout=0.3, max_retries=0
        )
        after = await queue.enqueue(taskfns.add, args=(2, 2))
        result = await results.get(slow, wait=True, timeout=10)
        assert (await results.get(after, wait=True, timeout=10)).unwrap() == 4
    assert result.status is TaskStatus.FAILED and result.error.type == "TaskTimeoutError"
    assert marker.read_text() == "killed"


async def test_cancel_kills_the_running_greenlet(stores, tmp_path: Path) -> None:
    queue, results = stores
    marker = tmp_path / "marker"
    async with make_worker(stores, max_workers=2, lease_timeout=1.5):
        running = await queue.enqueue(sleep_or_record_kill, args=(str(marker), 60))
        await wait_until(lambda: _status_is(queue, running, TaskStatus.RUNNING), timeout=10)
        await wait_until(marker.exists, timeout=10)
        assert await queue.cancel(running)
        result = await results.get(running, wait=True, timeout=10)
        await wait_until(lambda: marker.read_text() == "killed", timeout=10)
    assert result.status is TaskStatus.CANCELLED
    assert (await queue.get_task(running)).status is TaskStatus.CANCELLED


async def test_graceful_stop_lets_the_running_task_finish(stores, tmp_path: Path) -> None:
    queue, results = stores
    marker = tmp_path / "marker"
    worker = make_worker(stores, max_workers=1)
    await worker.start()
    in_flight = await queue.enqueue(sleep_or_record_kill, args=(str(marker), 0.5))
    await wait_until(marker.exists, timeout=10)
    queued = await queue.enqueue(taskfns.add, args=(1, 2))
    stopping = utcnow()
    await worker.stop()
    result = await results.get(in_flight)
    assert result is not None and result.unwrap() == "slept" and result.finished_at > stopping
    assert marker.read_text() == "finished"
    assert (await queue.get_task(queued)).status is TaskStatus.PENDING


async def test_stop_past_its_grace_kills_and_hands_the_task_back(stores, tmp_path: Path) -> None:
    queue, _ = stores
    marker = tmp_path / "marker"
    worker = make_worker(stores, max_workers=1)
    await worker.start()
    task_id = await queue.enqueue(sleep_or_record_kill, args=(str(marker), 60))
    await wait_until(marker.exists, timeout=10)
    await worker.stop(timeout=0.2)
    assert marker.read_text() == "killed"
    task = await queue.get_task(task_id)
    assert task.status is TaskStatus.PENDING and task.worker_id is None


def test_sync_twin_runs_tasks(tmp_path: Path) -> None:
    db = str(tmp_path / "omniq.db")
    queue, results = SQLiteTaskQueue(db_path=db), SQLiteResultStorage(db_path=db)
    worker = GeventWorker(queue=queue, result_store=results, max_workers=2, poll_interval=0.05)
    try:
        worker.start()
        task_id = queue.enqueue(where)
        assert results.get(task_id, wait=True, timeout=10).unwrap()["thread"] == "omniq-gevent"
        stopper = threading.Timer(0.2, worker.stop)
        stopper.start()
        worker.run()  # returns once stop() ran in the other thread
        stopper.join()
    finally:
        queue.close()
        results.close()
    assert worker.processed == 1


def test_missing_gevent_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gevent", None)  # import gevent now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'omniq\[gevent\]'"):
        AsyncGeventWorker(queue=AsyncMemoryTaskQueue())


# --- in subprocesses: monkey-patching and the command ------------------------------------------


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _without_gevent(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``import gevent`` fails as if the package were not installed."""
    fake = tmp_path / "no_gevent" / "gevent"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'gevent'\", name='gevent')\n"
    )
    path = os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_omniq_imports_without_gevent(tmp_path: Path) -> None:
    env = _without_gevent(tmp_path)
    done = _python(
        """
        import omniq.workers
        from omniq.workers import GeventWorker
        try:
            GeventWorker(queue=None)
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    assert "MissingDependencyError" in done.stdout and "omniq[gevent]" in done.stdout
    worker = subprocess.run(
        [sys.executable, "-m", "omniq", "worker", "--worker-type", "gevent"],
        env={**env, "OMNIQ_BASE_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 1 and "Traceback" not in worker.stderr
    assert worker.stderr.startswith("omniq: error: gevent is required"), worker.stderr
    assert "pip install 'omniq[gevent]'" in worker.stderr


@pytest.mark.parametrize(
    ("patch_call", "refused"),
    [
        pytest.param("monkey.patch_all()", "threading, queue, selectors", id="patch_all"),
        pytest.param("monkey.patch_all(thread=False, queue=False)", "selectors", id="selectors"),
    ],
)
def test_refuses_a_process_patched_the_wrong_way(patch_call: str, refused: str) -> None:
    done = _python(
        f"""
        from gevent import monkey
        {patch_call}
        from omniq.queue import AsyncMemoryTaskQueue
        from omniq.workers import AsyncGeventWorker
        try:
            AsyncGeventWorker(queue=AsyncMemoryTaskQueue())
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigError"), done.stdout
    assert f"patched with {refused} patched" in done.stdout
    assert "omniq.workers.gevent_pool.patch()" in done.stdout


GEVENT_TASKS = '''
import time

from gevent import GreenletExit, monkey

_arrived = 0


def patched():
    names = ("time", "socket", "ssl", "select", "threading", "queue", "selectors")
    return {name: monkey.is_module_patched(name) for name in names}


def rendezvous(n):
    """Plain time.sleep: all n meet only if the sleeps cooperate."""
    global _arrived
    _arrived += 1
    deadline = time.monotonic() + 20
    while _arrived < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def nap(marker, seconds):
    try:
        time.sleep(seconds)
    except GreenletExit:
        open(marker, "w").write("killed")
        raise
    return "slept"
'''


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Only our OMNIQ_* variables, here and in the ``omniq`` subprocess (as in test_cli)."""
    for name in [name for name in os.environ if name.startswith("OMNIQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OMNIQ_BASE_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMNIQ_POLL_INTERVAL", "0.05")
    (tmp_path / "geventtasks.py").write_text(GEVENT_TASKS)
    return dict(os.environ)


def _start_cli_worker(
    env: dict[str, str], cwd: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log = cwd / "worker.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "omniq", "worker", "--import", "geventtasks", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return process, log


def _stop_cli_worker(process: subprocess.Popen[bytes], log: Path) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the worker ran on after SIGTERM; log:\n{log.read_text()}") from None
    text = log.read_text()
    assert code == 0, text
    return text


def test_cli_gevent_worker_patches_first_and_kills_timed_out_greenlets(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    n = 40
    marker = tmp_path / "killed"
    process, log = _start_cli_worker(
        cli_env, tmp_path, "--worker-type", "gevent", "--max-workers", str(n)
    )
    try:
        with OmniQ.from_env() as oq:
            patched = oq.enqueue("geventtasks:patched")
            met = [oq.enqueue("geventtasks:rendezvous", args=(n,)) for _ in range(n)]
            slow = oq.enqueue("geventtasks:nap", args=(str(marker), 60), timeout=0.5, max_retries=0)
            assert oq.get_result(patched, wait=True, timeout=30).unwrap() == {
                "time": True,
                "socket": True,
                "ssl": True,
                "select": True,
                "threading": False,
                "queue": False,
                "selectors": False,
            }
            assert [oq.get_result(i, wait=True, timeout=60).unwrap() for i in met] == [True] * n
            timed_out = oq.get_result(slow, wait=True, timeout=30)
    finally:
        text = _stop_cli_worker(process, log)
    assert timed_out.status is TaskStatus.FAILED and timed_out.error.type == "TaskTimeoutError"
    assert marker.read_text() == "killed"
    assert "GeventWorker" in text and "worker stopped" in text
    assert "Traceback" not in text and "not monkey-patched" not in text


def test_cli_patches_for_a_configured_gevent_worker(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    process, log = _start_cli_worker({**cli_env, "OMNIQ_DEFAULT_WORKER": "gevent"}, tmp_path)
    try:
        with OmniQ.from_env() as oq:
            patched = oq.enqueue("geventtasks:patched")
            values = oq.get_result(patched, wait=True, timeout=30).unwrap()
    finally:
        text = _stop_cli_worker(process, log)
    assert values["time"] and values["socket"] and not values["threading"]
    assert "GeventWorker" in text
