"""A FastAPI app that enqueues a report from a route and hands back the URL of its result.

Run it from this folder, with a worker in another terminal (both read the ``OMNIQ_*`` settings;
here the embedded SQLite database under ``./omniq_data``)::

    uvicorn app:app
    python -m omniq worker --import tasks

then ``curl -X POST localhost:8000/reports -H 'content-type: application/json'
-d '{"title": "q3 sales", "rows": 1000}'`` and follow its ``result_url``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response, status
from pydantic import BaseModel
from tasks import make_report

from omniq import AsyncOmniQ
from omniq.contrib.asgi import omniq_lifespan
from omniq.contrib.fastapi import OmniQDep

# One AsyncOmniQ from the OMNIQ_* settings, opened at startup and closed at shutdown. For a
# small deployment, worker=True runs the worker inside this process instead.
app = FastAPI(title="reports", lifespan=omniq_lifespan(AsyncOmniQ.from_env))


class ReportRequest(BaseModel):
    title: str
    rows: int = 100


@app.post("/reports", status_code=status.HTTP_202_ACCEPTED)
async def create_report(body: ReportRequest, oq: OmniQDep, request: Request) -> dict[str, str]:
    """Queue a report; the response says where its result will be."""
    task_id = await oq.enqueue(make_report, {"title": body.title, "rows": body.rows})
    return {"task_id": task_id, "result_url": str(request.url_for("report", task_id=task_id))}


@app.get("/reports/{task_id}", name="report")
async def report(task_id: str, oq: OmniQDep, response: Response, wait: float = 0) -> dict[str, Any]:
    """The report's result: 200 once the task has ended, 202 while it is queued or running
    (``?wait=S`` waits up to S seconds for it first), 404 for an unknown id."""
    result = None
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            result = await oq.get_result(task_id, wait=True, timeout=min(wait, 30))
    else:
        result = await oq.get_result(task_id)
    if result is not None:
        error = result.error
        return {
            "status": result.status,
            "value": result.value,
            "error": None if error is None else f"{error.type}: {error.message}",
        }
    task = await oq.get_task(task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    response.status_code = status.HTTP_202_ACCEPTED
    return {"status": task.status, "value": None, "error": None}
