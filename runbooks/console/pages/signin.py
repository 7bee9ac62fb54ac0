"""Sign-in and sign-out (public: the sign-in form; signed in: sign-out)."""

from __future__ import annotations

import contextlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from runbooks.console import auth, csrf, errors, wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import error_page, read_form, safe_next
from runbooks.console.templating import render

# Refusals and lockouts on `invoke console`'s stderr (the address only: a name field sometimes
# holds a password typed in the wrong box).
log = logging.getLogger("runbooks.console")


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _form(
    request: Request, status: int = 200, message: str = "", name: str = "", target: str = ""
) -> Response:
    """The sign-in form with a fresh double-submit token (cookie and hidden field); `target`:
    where to go once signed in (default: the `next` the sign-in link carries)."""
    token = csrf.new_token()
    response = render(
        request,
        "signin.html",
        None,
        status,
        csrf_token=token,
        next=safe_next(target or request.query_params.get("next")),
        message=message,
        name=name,
    )
    response.set_cookie(
        csrf.SIGNIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/signin",
    )
    return response


async def show_form(request: Request) -> Response:
    """The sign-in form."""
    return _form(request)


async def submit(request: Request) -> Response:
    """Check the sign-in form; on success, the session cookie and back where the operator was."""
    form = await read_form(request)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    if not csrf.matches(form.get(csrf.FIELD), request.cookies.get(csrf.SIGNIN_COOKIE)):
        return _form(request, 403, "the form expired: sign in again", name, target)
    console = wiring.of(request)
    address = auth.client_address(request.client.host if request.client else None)
    try:
        viewer = await run_in_threadpool(auth.sign_in, console, name, password, address)
    except errors.HANDLED as exc:
        status = errors.status_of(exc)
        if status in (403, 429):
            what = "refused" if status == 403 else "locked out"
            log.warning("console sign-in %s for a client at %s", what, address)
            said = errors.message_of(exc, console.app.settings)
            response = _form(request, 401 if status == 403 else 429, said, name, target)
            if status == 429:
                response.headers["retry-after"] = str(int(getattr(exc, "retry_after", 1)))
            return response
        return error_page(request, None, exc)
    old = request.cookies.get(auth.COOKIE)
    if old:  # a session this browser had: ended, so one browser holds one session
        await run_in_threadpool(_end_quietly, console, old)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        auth.COOKIE,
        viewer.session,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/",
    )
    response.delete_cookie(csrf.SIGNIN_COOKIE, path="/signin", httponly=True, samesite="strict")
    return response


def _end_quietly(console: wiring.Console, sid: str) -> None:
    # a malformed id or a Redis hiccup: the old session just expires
    with contextlib.suppress(*errors.HANDLED):
        console.sessions.destroy(sid)


async def sign_out(request: Request, viewer: Viewer) -> Response:
    """End the session (a POST with the CSRF token)."""
    await run_in_threadpool(auth.sign_out, wiring.of(request), viewer)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
    return response
