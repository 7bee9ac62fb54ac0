"""Runs: the run history (keyset pages, newest first) and one run's hosts and steps."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.inputs import record_id
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render
from runbooks.engine import history
from runbooks.errors import NotFound

PAGE = 50


async def list_runs(request: Request, viewer: Viewer) -> Response:
    """Recorded runs (books and ops commands), newest first."""
    console = wiring.of(request)
    text = request.query_params.get("before")
    try:
        before = None if not text else record_id(text, "page", "this page")
    except InvalidRequest as exc:
        return render(request, "error.html", viewer, 400, status_code=400, message=str(exc))
    runs = await run_in_threadpool(history.list_runs, console.app.sessions, PAGE + 1, before)
    older = f"/runs?before={runs[PAGE - 1]['id']}" if len(runs) > PAGE else None
    return render(request, "runs.html", viewer, runs=runs[:PAGE], older=older)


async def show(request: Request, viewer: Viewer) -> Response:
    """One run: who, what, when; each host's outcome and each step's, output masked."""
    console = wiring.of(request)
    try:
        run_id = record_id(request.path_params["id"], "run", "the runs page")
    except InvalidRequest as exc:
        raise NotFound(str(exc)) from None
    run = await run_in_threadpool(history.get_run, console.app.sessions, run_id)
    run = console.redactor.value(run)
    return render(request, "run.html", viewer, run=run)
