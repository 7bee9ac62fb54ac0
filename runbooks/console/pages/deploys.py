"""Deploys: the deploy log (`invoke deploy.log`), every deploy and rollback, newest first.

`?env=NAME` keeps one environment (checked as the command checks `--env`: 400 otherwise).
The commits between releases come from `git log` in the directory the console was started in,
as the command reads them from its own working directory. For an operator, each environment
of the inventory has the deploy and rollback forms (check mode first:
runbooks/console/pages/deploying.py); the rollback form offers the releases the log names.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.inputs import environment_name
from runbooks.console import acting, environments, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render
from runbooks.deploy import log, release
from runbooks.engine.redact import Redactor

LAST = 50  # entries shown, newest first
COMMITS = 10  # commits shown per entry (the rest counted; `invoke deploy.log` lists them all)


async def deploy_log(request: Request, viewer: Viewer) -> Response:
    """Who deployed which ref and release to which hosts, the outcome, the commits it brought."""
    console = wiring.of(request)
    env = request.query_params.get("env", "").strip()
    try:
        if env:
            environment_name(env)
    except InvalidRequest as exc:
        return render(request, "error.html", viewer, 400, status_code=400, message=str(exc))
    entries = await run_in_threadpool(shown, console, env or None)
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
        entries=entries,
        env=env,
        places=places,
        releases=releases,
    )


def shown(console: wiring.Console, env: str | None) -> list[dict[str, Any]]:
    """The log's entries as the page shows them, masked, with the first COMMITS commits of
    each. A range's commits are the same list on every view (the log keeps them), so they are
    masked once: 50 entries of up to 200 commit subjects cost ~37 ms to mask on every view."""
    entries = log.deploy_log(console.app.sessions, env, console.repo, LAST)
    masked = []
    for entry in entries:
        commits = tuple(entry.get("commits") or ())
        row = console.redactor.value({k: v for k, v in entry.items() if k != "commits"})
        shown = _masked_commits(console.redactor, commits[:COMMITS])
        masked.append({**row, "commits": shown, "more_commits": len(commits) - len(shown)})
    return masked


_MASKED: dict[tuple[int, int, tuple[str, ...]], list[str]] = {}


def _masked_commits(redactor: Redactor, commits: tuple[str, ...]) -> list[str]:
    key = (id(redactor), redactor.known, commits)  # a secret added later masks anew
    found = _MASKED.get(key)
    if found is None:
        if len(_MASKED) >= 1024:  # ranges outlived by newer deploys
            _MASKED.clear()
        found = _MASKED[key] = [redactor.text(c) for c in commits]
    return found


def is_release(entry: dict[str, object]) -> bool:
    return bool(release.RELEASE_NAME.fullmatch(str(entry.get("release") or "")))
