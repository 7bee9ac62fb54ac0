"""Deploys: the deploy log (`invoke deploy.log`), every deploy and rollback, newest first.

`?env=NAME` keeps one environment (checked as the command checks `--env`: 400 otherwise).
The commits between releases come from `git log` in the directory the console was started in,
as the command reads them from its own working directory. For an operator, each environment
of the inventory has the deploy and rollback forms (check mode first:
runbooks/console/pages/deploying.py); the rollback form offers the releases the log names.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.inputs import environment_name
from runbooks.console import acting, environments, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render
from runbooks.deploy import log, release

LAST = 50  # entries shown, newest first


async def deploy_log(request: Request, viewer: Viewer) -> Response:
    """Who deployed which ref and release to which hosts, the outcome, the commits it brought."""
    console = wiring.of(request)
    env = request.query_params.get("env", "").strip()
    try:
        if env:
            environment_name(env)
    except InvalidRequest as exc:
        return render(request, "error.html", viewer, 400, status_code=400, message=str(exc))
    entries = await run_in_threadpool(
        log.deploy_log, console.app.sessions, env or None, console.repo, LAST
    )
    may_act = acting.may(viewer, "deploy")
    places = await run_in_threadpool(environments.known, console) if may_act else []
    releases = {
        e.name: sorted(
            {r["release"] for r in entries if r["environment"] == e.name and is_release(r)},
            reverse=True,
        )
        for e in places
    }
    return render(
        request,
        "deploys.html",
        viewer,
        entries=console.redactor.value(entries),
        env=env,
        places=places,
        releases=releases,
    )


def is_release(entry: dict[str, object]) -> bool:
    return bool(release.RELEASE_NAME.fullmatch(str(entry.get("release") or "")))
