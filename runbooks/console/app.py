"""The console's routes and middleware.

Every route is signed in (:func:`runbooks.console.routing.signed_in`) except those in
:data:`PUBLIC`: the health check, the sign-in form and the stylesheet. The security headers
wrap everything, unknown paths and errors included.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from runbooks.console import health, wiring
from runbooks.console.headers import SecurityHeaders
from runbooks.console.pages import (
    approvals,
    deploying,
    deploys,
    failed,
    overview,
    queues,
    redis,
    runs,
    signin,
    start,
    workers,
)
from runbooks.console.routing import not_found, signed_in
from runbooks.console.wiring import Console

PUBLIC = ("/healthz", "/signin", "/static")  # served without a session; nothing else is


async def healthz(request: Request) -> Response:
    """Liveness: the process answers (no service is asked). With `?ready=1`, readiness: 503
    naming the sessions Redis or the database when they do not answer (runbooks/console/health)."""
    if "ready" not in request.query_params:
        return PlainTextResponse("ok")
    problems = await run_in_threadpool(health.not_ready, wiring.of(request))
    if problems:
        return PlainTextResponse(f"not ready: {'; '.join(problems)}", status_code=503)
    return PlainTextResponse("ready")


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/signin", signin.show_form, methods=["GET"]),
        Route("/signin", signin.submit, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("runbooks.console", "static")]), name="static"),
        Route("/signout", signed_in(signin.sign_out), methods=["POST"]),
        Route("/", signed_in(overview.overview), methods=["GET"]),
        Route("/failed", signed_in(failed.list_failed), methods=["GET"]),
        Route("/failed/retry", signed_in(failed.retry_many), methods=["POST"]),
        Route("/failed/{id}", signed_in(failed.show), methods=["GET"]),
        Route("/failed/{id}/retry", signed_in(failed.retry), methods=["POST"]),
        Route("/failed/{id}/forget", signed_in(failed.forget), methods=["POST"]),
        Route("/runs", signed_in(runs.list_runs), methods=["GET"]),
        Route("/runs/new", signed_in(start.new_form), methods=["GET"]),
        Route("/runs/new", signed_in(start.start), methods=["POST"]),
        Route("/runs/sent/{request}", signed_in(start.waiting), methods=["GET"]),
        Route("/runs/{id}", signed_in(runs.show), methods=["GET"]),
        Route("/runs/{id}/events", signed_in(runs.events), methods=["GET"]),
        Route("/runs/{id}/real", signed_in(runs.run_for_real), methods=["POST"]),
        Route("/approvals", signed_in(approvals.list_approvals), methods=["GET"]),
        Route("/approvals/{id}/approve", signed_in(approvals.approve), methods=["POST"]),
        Route("/approvals/{id}/deny", signed_in(approvals.deny), methods=["POST"]),
        Route("/deploys", signed_in(deploys.deploy_log), methods=["GET"]),
        Route("/deploys/deploy", signed_in(deploying.deploy), methods=["POST"]),
        Route("/deploys/rollback", signed_in(deploying.rollback), methods=["POST"]),
        Route("/queues", signed_in(queues.queue_sizes), methods=["GET"]),
        Route("/workers", signed_in(workers.worker_status), methods=["GET"]),
        Route("/workers/restart", signed_in(workers.restart), methods=["POST"]),
        Route("/redis", signed_in(redis.redis_health), methods=["GET"]),
    ]


def build(console: Console) -> Starlette:
    """The ASGI app serving `console`."""
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: not_found},
    )
    app.state.console = console
    return app
