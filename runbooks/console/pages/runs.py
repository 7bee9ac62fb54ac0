"""Runs: the run history (keyset pages, newest first) and one run's hosts and steps; while it
runs, its live events (:mod:`runbooks.console.pages.live`); a check run's "Run for real"
(:mod:`runbooks.console.pages.start`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.inputs import record_id
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.pages import live, start
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


def run_id_of(request: Request) -> int:
    """The run the path names; NotFound (404) for what is no run id."""
    try:
        return record_id(request.path_params["id"], "run", "the runs page")
    except InvalidRequest as exc:
        raise NotFound(str(exc)) from None


async def show(request: Request, viewer: Viewer) -> Response:
    """One run: who, what, when; each host's outcome and each step's, output masked; while
    it runs, its events so far (the page's script streams the rest)."""
    console = wiring.of(request)
    run_id = run_id_of(request)
    run = await run_in_threadpool(history.get_run, console.app.sessions, run_id)
    run = console.redactor.value(run)
    events: list[dict[str, Any]] = []
    after = unread = ""
    if run["status"] == "running":
        events, after, unread = await run_in_threadpool(live.so_far, console, run_id)
    real = not start.why_not_real(run, viewer.name, dt.datetime.now(dt.UTC))
    return render(
        request, "run.html", viewer, run=run, events=events, after=after, unread=unread, real=real
    )


async def events(request: Request, viewer: Viewer) -> Response:
    """The run's live events as server-sent events."""
    return await live.stream(request, viewer, run_id_of(request))


async def run_for_real(request: Request, viewer: Viewer) -> Response:
    """Send a check run's book for real."""
    return await start.run_for_real(request, viewer, run_id_of(request))
