"""Users' type checkers see OmniQ's public API: a correct program passes mypy (strict) and
pyright; typos, wrong argument types and a misused result are reported by both."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

GOOD = """
    from __future__ import annotations

    from omniq import AsyncOmniQ, OmniQ, Task
    from omniq.queue import MemoryTaskQueue, SQLiteTaskQueue
    from omniq.storage import SQLiteEventStorage, SQLiteResultStorage
    from omniq.workers import ThreadPoolWorker

    oq = OmniQ(project_name="typed")


    @oq.task(queue_name="low")
    def add(x: int, y: int = 0) -> int:
        return x + y


    def use_facade() -> int:
        task_id: str = add.enqueue(1, y=2)
        oq.enqueue(add, {"x": 1}, queue_name="high", priority=3, max_retries=2, run_in=1.5)
        task: Task | None = oq.get_task(task_id)
        oq.start_worker()
        oq.join(timeout=5)
        oq.get_result(task_id, wait=True, timeout=5)
        oq.stop_worker()
        return add(1, 2) + (task.attempts if task else 0)


    def use_components(path: str) -> int:
        queue = SQLiteTaskQueue(db_path=path, project_name="p", queues=["high", "low"])
        results = SQLiteResultStorage(db_path=path)
        events = SQLiteEventStorage(db_path=path)
        queue.enqueue("tasks:work", {"n": 1}, key="once")
        worker = ThreadPoolWorker(queue=queue, result_store=results, max_workers=2)
        worker.start()
        worker.stop()
        name: str = queue.project_name
        with MemoryTaskQueue() as memory:
            pending: int = memory.count(status="pending")
        events.close()
        return queue.count() + len(name) + pending


    async def use_async() -> str:
        async with AsyncOmniQ() as aoq:

            @aoq.task
            def mul(a: int, b: int) -> int:
                return a * b

            task_id: str = await mul.enqueue(2, b=3)
            await aoq.enqueue(mul, {"a": 1, "b": 2}, priority=1)
            return task_id
"""

BAD = """
    from omniq import OmniQ
    from omniq.queue import SQLiteTaskQueue

    oq = OmniQ()


    @oq.task
    def add(x: int, y: int = 0) -> int:
        return x + y


    oq.enqueu(add)
    add.enqueue("one")
    oq.enqueue(add, priority="high")
    SQLiteTaskQueue(db_paht="x.db")
    add(1).upper()
    count: str = SQLiteTaskQueue().count()
"""

#: (mypy's message, pyright's message) for each mistake in BAD, in order.
MISTAKES = [
    ('"OmniQ" has no attribute "enqueu"', 'Cannot access attribute "enqueu"'),
    ('incompatible type "str"; expected "int"', "\"Literal['one']\" is not assignable to \"int\""),
    ('Argument "priority" to "enqueue"', "\"Literal['high']\" is not assignable to \"int\""),
    ('Unexpected keyword argument "db_paht"', 'No parameter named "db_paht"'),
    ('"int" has no attribute "upper"', 'Cannot access attribute "upper" for class "int"'),
    ("Incompatible types in assignment", '"int" is not assignable to "str"'),
]


def _program(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(source))
    return path


def _mypy(program: Path) -> tuple[int, str]:
    # OmniQ from this tree, checked as a library is: its own errors are not the user's.
    config = program.parent / "mypy.ini"
    config.write_text(
        f"[mypy]\nstrict = True\nmypy_path = {SRC}\n"
        "[mypy-omniq,omniq.*]\nfollow_imports = silent\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", program],
        capture_output=True,
        text=True,
        cwd=program.parent,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def _pyright(program: Path) -> tuple[int, list[str]]:
    config = {"extraPaths": [str(SRC)], "pythonVersion": "3.11", "typeCheckingMode": "standard"}
    (program.parent / "pyrightconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable],
        capture_output=True,
        text=True,
        cwd=program.parent,
        timeout=600,
    )
    report = json.loads(done.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    return done.returncode, [f"{d['range']['start']['line'] + 1}: {d['message']}" for d in errors]


@pytest.fixture(params=["mypy", "pyright"])
def checker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_correct_program_passes(tmp_path: Path, checker: str) -> None:
    program = _program(tmp_path, GOOD)
    if checker == "mypy":
        code, output = _mypy(program)
        assert code == 0, output
    else:
        code, errors = _pyright(program)
        assert (code, errors) == (0, [])


def test_typos_wrong_types_and_misused_results_are_reported(tmp_path: Path, checker: str) -> None:
    program = _program(tmp_path, BAD)
    first = textwrap.dedent(BAD).splitlines().index("oq.enqueu(add)") + 1
    if checker == "mypy":
        code, output = _mypy(program)
        lines = [line for line in output.splitlines() if ": error:" in line]
    else:
        code, lines = _pyright(program)
    assert code != 0
    for offset, messages in enumerate(MISTAKES):
        expected = messages[0] if checker == "mypy" else messages[1]
        line = first + offset
        on_line = [e for e in lines if f":{line}:" in e or e.startswith(f"{line}: ")]
        assert any(expected in e for e in on_line), (line, expected, lines)
