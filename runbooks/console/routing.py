"""Every page but the public ones is served through :func:`signed_in`:

- no live session: a GET is sent to the sign-in page (coming back afterwards), anything else
  is refused with 401;
- a POST must carry the session's CSRF token (403 otherwise) before its endpoint runs;
- the project's errors become an error page with their status and one line
  (:mod:`runbooks.console.errors`).

Blocking work (Redis, SQL, the broker) runs in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from runbooks.console import auth, csrf, errors, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render

Page = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


MAX_FIELDS = 64  # the most a console form has: a page of failed-task checkboxes (50) and a few


async def read_form(request: Request) -> FormData:
    """The request's form, small as the console's forms are (no files, short fields, at most
    MAX_FIELDS; beyond that Starlette answers 400), read once and kept on the request."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=16 * 1024)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (never //host or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def error_page(request: Request, viewer: Viewer | None, exc: BaseException) -> Response:
    """The page for an error the project raised on purpose (others propagate: a 500)."""
    console = wiring.of(request)
    status = errors.status_of(exc)
    message = errors.message_of(exc, console.app.settings)
    headers = {}
    if status == 429:
        headers["retry-after"] = str(int(getattr(exc, "retry_after", 1)))
    response = render(request, "error.html", viewer, status, status_code=status, message=message)
    response.headers.update(headers)
    return response


def refused(request: Request, viewer: Viewer | None, status: int, message: str) -> Response:
    return render(request, "error.html", viewer, status, status_code=status, message=message)


async def not_found(request: Request, exc: Exception) -> Response:
    """No route or static file at this address: the console's own 404 page, in the signed-in
    layout for a signed-in operator and the bare one (no navigation) for anyone else."""
    viewer = None
    cookie = request.cookies.get(auth.COOKIE)
    if cookie:
        with suppress(*errors.HANDLED):  # the 404 all the same, in the layout without a session
            viewer = await run_in_threadpool(auth.resolve, wiring.of(request), cookie)
    return refused(request, viewer, 404, "nothing at this address")


def signed_in(page: Page) -> Endpoint:
    """`page` for signed-in operators only, its POSTs CSRF-checked."""

    async def endpoint(request: Request) -> Response:
        console = wiring.of(request)
        try:
            viewer = await run_in_threadpool(
                auth.resolve, console, request.cookies.get(auth.COOKIE)
            )
        except errors.HANDLED as exc:
            return error_page(request, None, exc)
        if viewer is None:
            if request.method == "GET":
                there = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response: Response = RedirectResponse(
                    "/signin?" + urlencode({"next": there}), status_code=303
                )
            else:
                response = refused(request, None, 401, "sign in first")
            if request.cookies.get(auth.COOKIE):
                response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
            return response
        if request.method == "POST":
            form = await read_form(request)
            if not csrf.matches(form.get(csrf.FIELD), viewer.csrf):
                return refused(request, viewer, 403, "the form's CSRF token is missing or wrong")
        try:
            return await page(request, viewer)
        except errors.HANDLED as exc:
            return error_page(request, viewer, exc)

    endpoint.__name__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint
