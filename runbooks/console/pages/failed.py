"""Failed tasks: the list (filters, keyset pages), one record, retry and forget; retry of the
ticked rows or of all (of one queue or every one), as `invoke failed.retry 12,13` and
`invoke failed.retry all [--queue Q]`.

The same functions `invoke failed.list|show|retry|forget` call, in the same order: the ids
are checked before anything is recorded, then the action runs recorded as the command.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest, NotFound
from celery_app.inputs import record_id
from celery_app.ops import failed_tasks as ft
from runbooks.console import acting, wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import read_form
from runbooks.console.templating import render

PAGE = 50
FILTERS = ("queue", "task", "since")
ACTIONS = ("failed.retry", "failed.forget")  # the records this page's buttons close


def failed_id(request: Request) -> int:
    """The id in the path; NotFound (404) for anything that is not one."""
    try:
        return ft.parse_id(request.path_params["id"])
    except InvalidRequest as exc:
        raise NotFound(str(exc)) from None


async def list_failed(request: Request, viewer: Viewer) -> Response:
    """Failed tasks, newest first, filtered by queue, task and time; older pages by id."""
    console = wiring.of(request)
    given = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    chosen = {k: v or None for k, v in given.items()}

    def read() -> tuple[ft.Page | None, str, dict[str, Any] | None]:
        done = acting.banner(console, request.query_params.get("run"), ACTIONS)
        try:
            before_text = request.query_params.get("before")
            before = None if not before_text else record_id(before_text, "page", "this page")
            page = ft.list_failed(console.app.uow, limit=PAGE, before=before, **chosen)
        except InvalidRequest as exc:
            return None, str(exc), done
        return page, "", done

    page, problem, done = await run_in_threadpool(read)
    kept = {k: v for k, v in given.items() if v}
    older = newest = None
    if page is not None and page.next_before is not None:
        older = "/failed?" + urlencode({**kept, "before": page.next_before})
    if request.query_params.get("before"):
        newest = "/failed" + (f"?{urlencode(kept)}" if kept else "")
    return render(
        request,
        "failed_list.html",
        viewer,
        400 if problem else 200,
        page=page,
        problem=problem,
        filters=given,
        filtered=any(given.values()),
        older=older,
        newest=newest,
        done=done,
        retry_all=not (given["task"] or given["since"]),  # the command's all takes --queue only
        page_size=PAGE,
        can_retry=acting.may(viewer, "failed.retry"),
        can_forget=acting.may(viewer, "failed.forget"),
    )


async def show(request: Request, viewer: Viewer) -> Response:
    """One failed task: its arguments, exception and traceback, secrets masked."""
    console = wiring.of(request)
    task_id = failed_id(request)
    row = await run_in_threadpool(ft.show, console.app.uow, task_id)
    masked = {k: console.redactor.text(str(v)) for k, v in row.as_dict(full=True).items()}
    return render(
        request,
        "failed_show.html",
        viewer,
        row=masked,
        can_retry=acting.may(viewer, "failed.retry"),
        can_forget=acting.may(viewer, "failed.forget"),
    )


async def retry(request: Request, viewer: Viewer) -> Response:
    """Send the task again and delete its record once the broker took it (failed.retry)."""
    console = wiring.of(request)
    chosen = [failed_id(request)]

    def run() -> acting.Outcome:
        ft.check(console.app.uow, chosen)  # refused: nothing written, not even history
        return acting.act(
            console,
            viewer,
            "failed.retry",
            {"ids": ",".join(map(str, chosen)), "queue": None},
            lambda: ft.retry(console.app.uow, console.sender(), chosen),
            lambda r: f"retried {len(r.retried)} failed tasks",
            ids=chosen,
            queue=None,
        )

    outcome = await run_in_threadpool(run)
    return RedirectResponse(f"/failed?run={outcome.run_id}", status_code=303)


async def forget(request: Request, viewer: Viewer) -> Response:
    """Delete the record (failed.forget)."""
    console = wiring.of(request)
    chosen = [failed_id(request)]

    def run() -> acting.Outcome:
        ft.check(console.app.uow, chosen)
        return acting.act(
            console,
            viewer,
            "failed.forget",
            {"ids": ",".join(map(str, chosen))},
            lambda: ft.forget(console.app.uow, chosen),
            lambda deleted: f"forgot {deleted} failed tasks",
            ids=chosen,
        )

    outcome = await run_in_threadpool(run)
    return RedirectResponse(f"/failed?run={outcome.run_id}", status_code=303)


def selection(form: FormData) -> tuple[list[int] | None, str | None]:
    """The bulk form's choice: (ids, None) for the ticked rows (one page's worth at most), or
    (None, queue or None) for all, which the form's box must confirm (the command's `all`).
    InvalidRequest (400) for anything else, before anything is read or recorded."""
    ticked = [str(v) for v in form.getlist("ids")]
    if form.get("scope") == "all":
        if ticked:
            raise InvalidRequest("retry the ticked rows or all of them, not both")
        if form.get("confirm") != "all":
            raise InvalidRequest("tick the box that says all, to retry every matching task")
        queue = str(form.get("queue") or "").strip()
        return None, queue or None
    if not ticked:
        raise InvalidRequest("tick at least one failed task to retry")
    if len(ticked) > PAGE:
        raise InvalidRequest(f"at most {PAGE} failed tasks at once (a page), got {len(ticked)}")
    return ft.parse_ids(ticked), None


async def retry_many(request: Request, viewer: Viewer) -> Response:
    """Send the ticked tasks again, or all of them (of one queue), recorded once (failed.retry)."""
    console = wiring.of(request)
    chosen, queue = selection(await read_form(request))

    def run() -> acting.Outcome:
        ft.check(console.app.uow, chosen, queue)  # refused: nothing written, not even history
        every = chosen is None
        return acting.act(
            console,
            viewer,
            "failed.retry",
            {"ids": "all" if every else ",".join(map(str, chosen or [])), "queue": queue},
            lambda: ft.retry(
                console.app.uow, console.sender(), chosen, all_rows=every, queue=queue
            ),
            lambda r: f"retried {len(r.retried)} failed tasks",
            ids=chosen or "all",
            queue=queue,
        )

    outcome = await run_in_threadpool(run)
    return RedirectResponse(f"/failed?run={outcome.run_id}", status_code=303)
