"""Start a book from the console, check mode first, then for real: as `invoke run BOOK --remote`.

- `GET /runs/new`: the books an ops worker can be sent (the ops books folder,
  ``MAQSAFY_OPS_BOOKS_DIR``, default runbooks/books), the environments the inventory folder has,
  and --limit.
- `POST /runs/new`: the book is sent to the ops queue in **check mode** by the command line's
  own sender (:func:`runbooks.ops_queue.sender.submit`: the same signing, the same refusal when
  no ops consumer could run it), as the signed-in operator judged by the access gate like
  `invoke run` (:func:`runbooks.ops_queue.sender.admitted`); then to the request's page.
- `GET /runs/sent/<request>`: refreshes until the worker has recorded the run, then goes to it.
- `POST /runs/<id>/real`: the check run `id`, and the book, environment and limit it names,
  sent again for real, when :func:`why_not_real` finds nothing wrong: a check run sent to
  the ops queue, of that book, environment and limit, that ended ok, started by this operator
  less than :data:`FRESH` ago; and once per check (a double click sends one real run).
  Anything else is a one-line 4xx page and nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest
from celery_app.infra.boundary import redis_errors
from runbooks.access.context import signed_in_as
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import read_form, refused
from runbooks.console.templating import render
from runbooks.console.wiring import Console
from runbooks.engine import history
from runbooks.engine.inventory import environments
from runbooks.ops_queue import requests as ops_requests
from runbooks.ops_queue import sender
from runbooks.service import RunRequest, describe_books

FRESH = dt.timedelta(minutes=15)  # a check run older than this is checked again first
LIMIT = re.compile(r"[A-Za-z0-9_.,*?!\[\]-]{0,200}")  # host and group names, globs, !excludes


@dataclass(frozen=True)
class Choice:
    """What the start form offers: the valid books and the environments."""

    books: list[dict[str, Any]]
    environments: list[str]


def choices(console: Console) -> Choice:
    environ = console.environ
    books = [b for b in describe_books(ops_requests.books_dir(environ)) if not b["error"]]
    return Choice(books, environments(ops_requests.inventory_dir(environ)))


async def new_form(request: Request, viewer: Viewer) -> Response:
    """The start form: book, environment, --limit; it runs in check mode first."""
    console = wiring.of(request)
    offered = await run_in_threadpool(choices, console)
    return render(request, "run_new.html", viewer, choice=offered)


def wanted(form: Mapping[str, Any], offered: Choice) -> RunRequest:
    """The form's book, environment and limit as a check-mode request; InvalidRequest naming
    the field otherwise."""
    book, env, limit = (str(form.get(k) or "").strip() for k in ("book", "env", "limit"))
    if book not in {b["name"] for b in offered.books}:
        raise InvalidRequest(f"book: {book[:64]!r} is not a book the ops workers run; pick one")
    if env not in offered.environments:
        raise InvalidRequest(f"environment: {env[:64]!r} has no inventory; pick one")
    if not LIMIT.fullmatch(limit):
        raise InvalidRequest("limit: host or group names, globs and !excludes, comma-separated")
    return RunRequest(book, environment=env, limit=limit or None, check=True)


def send(console: Console, viewer: Viewer, request: RunRequest) -> sender.Sent:
    """Send `request` to the ops queue as `viewer`, judged as `invoke run --remote` is."""
    request = replace(request, books_dir=ops_requests.books_dir(console.environ))
    with signed_in_as(viewer.name, "run", {**request.arguments(), "remote": True}):
        who = sender.admitted(console.app, request)
        return sender.submit(console.app, console.celery, request, who, console.environ)


async def start(request: Request, viewer: Viewer) -> Response:
    """Send the chosen book in check mode; then to its request's page."""
    console = wiring.of(request)
    form = await read_form(request)
    offered = await run_in_threadpool(choices, console)
    run = wanted(form, offered)
    return await _sent(request, viewer, await run_in_threadpool(send, console, viewer, run))


async def _sent(request: Request, viewer: Viewer, sent: sender.Sent) -> Response:
    if sent.refused:
        return refused(request, viewer, 503, sent.refused)
    return RedirectResponse(f"/runs/sent/{sent.request_id}", status_code=303)


async def waiting(request: Request, viewer: Viewer) -> Response:
    """The run a request became once a worker recorded it; until then, a page that refreshes."""
    console = wiring.of(request)
    request_id = request.path_params["request"]
    if not ops_requests.NONCE.fullmatch(request_id):
        raise InvalidRequest("bad request id: open the run from the runs page")
    found = await run_in_threadpool(sender.find_run, console.app.sessions, request_id)
    if found is not None:
        return RedirectResponse(f"/runs/{found['id']}", status_code=303)
    return render(request, "run_sent.html", viewer, request_id=request_id)


def why_not_real(
    run: Mapping[str, Any], operator: str, now: dt.datetime, form: Mapping[str, Any] | None = None
) -> str:
    """Why check run `run` may not be run for real by `operator` ('' when it may); `form`, the
    book, environment and limit the button posted, must be the run's own."""
    arguments = run.get("arguments") or {}
    if run["kind"] != "runbook" or not run["check"] or not arguments.get("remote"):
        return f"run {run['id']} is not a check run sent from here: start the book from /runs/new"
    if run["status"] != "ok":
        return f"run {run['id']} ended {run['status']}: only a check that ended ok runs for real"
    if run["operator"] != operator:
        return f"run {run['id']} was started by {run['operator']}: run your own check first"
    started = dt.datetime.fromisoformat(str(run["started_at"]))
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)  # SQLite keeps no zone: rows are in UTC
    if now - started >= FRESH:
        return f"run {run['id']}'s check is older than 15 minutes: check again first"
    if form is not None:
        said = {k: str(form.get(k) or "") for k in ("book", "env", "limit")}
        ran = {
            "book": str(arguments.get("book") or ""),
            "env": str(run["environment"] or ""),
            "limit": str(arguments.get("limit") or ""),
        }
        if said != ran:
            return f"run {run['id']} checked {ran}, not {said}: run for real what was checked"
    return ""


def real_request(run: Mapping[str, Any]) -> RunRequest:
    """The check run's request, for real."""
    arguments = run["arguments"]
    return RunRequest(
        str(arguments["book"]),
        environment=str(run["environment"]),
        limit=arguments.get("limit") or None,
        tags=list(arguments.get("tags") or []),
        skip_tags=list(arguments.get("skip_tags") or []),
        check=False,
    )


async def run_for_real(request: Request, viewer: Viewer, run_id: int) -> Response:
    """Send check run `run_id`'s book for real, once :func:`why_not_real` finds nothing."""
    console = wiring.of(request)
    form = await read_form(request)
    run = await run_in_threadpool(history.get_run, console.app.sessions, run_id)
    problem = why_not_real(run, viewer.name, dt.datetime.now(dt.UTC), form)
    if problem:
        return refused(request, viewer, 403 if run["operator"] != viewer.name else 409, problem)
    sent = await run_in_threadpool(send_once, console, viewer, run_id, real_request(run))
    if sent is None:
        return refused(
            request, viewer, 409, f"run {run_id} was run for real already: check again first"
        )
    return await _sent(request, viewer, sent)


def send_once(
    console: Console, viewer: Viewer, run_id: int, request: RunRequest
) -> sender.Sent | None:
    """Send check run `run_id`'s real run unless it was sent already (None): a claim on the
    locks Redis for as long as a check stays fresh, given back when nothing was sent."""
    key = console.app.keyspace.lock(f"run-for-real:{run_id}")
    locks = console.app.redis("locks")
    with redis_errors("the locks Redis"):
        if not locks.set(key, viewer.name, nx=True, ex=int(FRESH.total_seconds())):
            return None
    try:
        sent = send(console, viewer, request)
    except BaseException:
        with redis_errors("the locks Redis"):
            locks.delete(key)
        raise
    if sent.refused:
        with redis_errors("the locks Redis"):
            locks.delete(key)
    return sent
