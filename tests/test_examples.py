"""The user-facing examples run to completion: both scripts and the notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupyter_client.kernelspec
import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KERNEL_NAME = "python3"


def run_script(path: Path) -> str:
    """Run an example script in its folder with no ``OMNIQ_*`` settings; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIQ_")}
    proc = subprocess.run(
        [sys.executable, path.name],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_basic_usage_script_runs() -> None:
    script = EXAMPLES / "01_basic_usage" / "basic_usage.py"
    out = run_script(script)
    assert "result: 'Hello, Tom!'" in out
    assert "async fetch_price('OMNI') -> 99.0" in out
    assert ".enqueue(...) -> 'welcome e-mail sent to alice@example.com'" in out
    # Named queues in priority order, then priority inside the default queue.
    order = ["1. high", "2. default, priority 5", "3. default, priority 0", "4. low"]
    positions = [out.index(line) for line in order]
    assert positions == sorted(positions)
    assert "'Hello, future me!' after" in out
    assert "status: failed after 3 attempts" in out
    assert "unwrap() raised TaskFailedError" in out
    assert "ZeroDivisionError" in out
    assert "'Hello, async world!'" in out
    assert out.rstrip().endswith("Done.")
    assert not (script.parent / "omniq_data").exists()


def test_component_usage_script_runs() -> None:
    script = EXAMPLES / "02_component_usage" / "component_usage.py"
    out = run_script(script)
    assert "task queue:     FileTaskQueue" in out
    assert "result storage: SQLiteResultStorage" in out
    assert "event storage:  SQLiteEventStorage" in out
    assert "max_retries=1, retry_delay=0.1" in out
    ran = [out.index(f"[{name:<6}] success") for name in ("high", "medium", "low")]
    assert ran == sorted(ran)
    assert "failed  unknown coupon 'FREE100'" in out
    assert "tasks succeeded: 4, failed: 1" in out
    assert "events of the failing coupon task: executing, retry, executing, error" in out
    assert "fetch_price('OMNI') -> 99.0" in out
    assert "'complete' events stored: 4" in out
    assert out.rstrip().endswith("Done.")
    assert not (script.parent / "omniq_data").exists()


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """A kernel that runs this interpreter (the venv's python, with omniq installed)."""
    specs = jupyter_client.kernelspec.KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME in specs:
        argv = jupyter_client.kernelspec.get_kernel_spec(KERNEL_NAME).argv
        # jupyter_client replaces a bare "python" with sys.executable when it starts the kernel.
        if argv and argv[0] in ("python", "python3", sys.executable):
            return KERNEL_NAME
    from ipykernel.kernelspec import install

    name = "omniq-examples"
    install(kernel_name=name, prefix=sys.prefix)
    return name


def test_component_usage_notebook_executes(kernel_name: str) -> None:
    path = EXAMPLES / "02_component_usage" / "component_usage.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for out in outputs if out.output_type == "error"]
    assert errors == []
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "task queue:     FileTaskQueue" in text
    assert "succeeded: 4, failed: 1" in text
    assert "fetch_price('OMNI') -> 99.0" in text
    assert "'complete' events stored: 4" in text
    assert "temporary data removed" in text
    assert not (path.parent / "omniq_data").exists()
