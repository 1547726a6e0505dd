"""OmniQ in ASGI apps: the lifespan helper and dependency (Starlette, FastAPI), and the example
app of examples/05_fastapi run as a person runs it: uvicorn on 127.0.0.1, ``omniq worker`` in
another process, httpx as the client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import stop_process, wait_until_sync
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from taskfns import add

from omniq import AsyncOmniQ, TaskStatus
from omniq.backends.memory.queue import AsyncMemoryTaskQueue
from omniq.backends.memory.storage import AsyncMemoryResultStorage
from omniq.contrib.asgi import get_omniq, omniq_lifespan
from omniq.contrib.fastapi import OmniQDep

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "05_fastapi"


def memory_omniq() -> AsyncOmniQ:
    return AsyncOmniQ(
        task_queue=AsyncMemoryTaskQueue(),
        result_store=AsyncMemoryResultStorage(),
        event_store=False,
        worker="async",
    )


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's ASGI lifespan as a server does (startup, then shutdown) and talk to it
    with httpx in between."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


async def enqueue_add(request: Request) -> JSONResponse:
    oq = get_omniq(request)
    body = await request.json()
    return JSONResponse({"task_id": await oq.enqueue(add, body)})


async def result(request: Request) -> JSONResponse:
    oq = get_omniq(request)
    res = await oq.get_result(request.path_params["task_id"], wait=True, timeout=10)
    return JSONResponse({"status": res.status, "value": res.value})


ROUTES = [Route("/add", enqueue_add, methods=["POST"]), Route("/result/{task_id}", result)]


async def test_the_lifespan_opens_an_omniq_whose_worker_runs_in_the_app() -> None:
    # Given a Starlette app whose lifespan opens an OmniQ with a worker in the app's process
    built: list[AsyncOmniQ] = []

    def factory() -> AsyncOmniQ:
        built.append(memory_omniq())
        return built[-1]

    app = Starlette(routes=ROUTES, lifespan=omniq_lifespan(factory, worker=True))
    async with served(app) as client:
        # When a route enqueues and another waits for the result
        task_id = (await client.post("/add", json={"a": 2, "b": 3})).json()["task_id"]
        answer = (await client.get(f"/result/{task_id}")).json()
        # Then the in-app worker ran it, and the facade is on the app's state
        assert answer == {"status": "success", "value": 5}
        assert app.state.omniq is built[0]
        assert built[0].worker is not None
    # And at shutdown the worker stopped, the facade left the app's state
    assert built[0].worker is None
    assert not hasattr(app.state, "omniq")
    # A second startup (as tests do) builds a fresh facade from the factory
    async with served(app) as client:
        task_id = (await client.post("/add", json={"a": 1, "b": 1})).json()["task_id"]
        assert (await client.get(f"/result/{task_id}")).json()["value"] == 2
    assert len(built) == 2 and built[1] is not built[0]


async def test_without_a_worker_the_lifespan_only_enqueues() -> None:
    oq = memory_omniq()
    app = Starlette(routes=ROUTES, lifespan=omniq_lifespan(oq))
    async with served(app) as client:
        task_id = (await client.post("/add", json={"a": 2, "b": 3})).json()["task_id"]
        assert oq.worker is None
        task = await oq.get_task(task_id)
        assert task is not None and task.status is TaskStatus.PENDING


async def test_the_fastapi_dependency_hands_the_omniq_to_routes() -> None:
    app = FastAPI(lifespan=omniq_lifespan(memory_omniq, worker=True))

    @app.post("/add")
    async def create(a: int, b: int, oq: OmniQDep) -> dict[str, Any]:
        task_id = await oq.enqueue(add, {"a": a, "b": b})
        res = await oq.get_result(task_id, wait=True, timeout=10)
        return {"value": res.unwrap(), "same": oq is app.state.omniq}

    async with served(app) as client:
        answer = await client.post("/add", params={"a": 20, "b": 22})
        assert answer.json() == {"value": 42, "same": True}


async def test_a_route_of_an_app_without_the_lifespan_says_what_is_missing() -> None:
    app = Starlette(routes=ROUTES)
    async with served(app) as client:
        with pytest.raises(RuntimeError, match="omniq_lifespan"):
            await client.post("/add", json={"a": 1, "b": 2})


# --- the example app, as deployed: uvicorn and a worker process --------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=EXAMPLE, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[str]:
    """The example app under uvicorn and ``omniq worker`` in another process, sharing the
    embedded SQLite database through OMNIQ_* settings; yields the app's base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIQ_")}
    env.update(
        OMNIQ_BASE_DIR=str(tmp_path / "data"),
        OMNIQ_PROJECT_NAME="reports",
        OMNIQ_POLL_INTERVAL="0.05",
    )
    port = free_port()
    server = start(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path / "uvicorn.log",
    )
    worker = start(
        [sys.executable, "-m", "omniq", "worker", "--import", "tasks", "--worker-type", "async"],
        env,
        tmp_path / "worker.log",
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "uvicorn.log").read_text()
        try:
            return httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until_sync(up, timeout=30)
        yield base
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    finally:
        stop_process(server)
        stop_process(worker)
    assert not (EXAMPLE / "omniq_data").exists()


def test_the_example_app_enqueues_and_a_worker_process_answers(deployment: str) -> None:
    with httpx.Client(base_url=deployment, timeout=30) as client:
        # When a report is requested
        created = client.post("/reports", json={"title": "q3 sales", "rows": 1000})
        assert created.status_code == 202
        body = created.json()
        assert body["result_url"] == f"{deployment}/reports/{body['task_id']}"
        # Then its result URL answers with the worker's result
        done = client.get(body["result_url"], params={"wait": 20})
        assert done.status_code == 200
        assert done.json() == {
            "status": "success",
            "value": {"title": "Q3 Sales", "rows": 1000, "total": 332833500},
            "error": None,
        }
        # And an unknown id is a 404
        assert client.get("/reports/nope").status_code == 404
