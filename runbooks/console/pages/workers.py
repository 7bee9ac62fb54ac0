"""Workers: each node's queues, release, active and reserved tasks, uptime (`invoke
workers.status`, the same `celery_app.ops.workers.status` over the broker, asked in the
background: runbooks/console/watch.py); and, for an operator, a graceful restart of an
inventory environment's workers, all hosts or one (`invoke workers.restart --env E
[--limit HOST]`: the workers-restart runbook, run as the command runs it, in a background
thread; the POST redirects to the run's record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest
from celery_app.infra.keyspace import QUEUES
from celery_app.inputs import environment_name, shown
from runbooks import service
from runbooks.console import acting, background, environments, wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import read_form
from runbooks.console.templating import render

COMMAND = "workers.restart"
BOOK = "workers-restart"


async def worker_status(request: Request, viewer: Viewer) -> Response:
    """Every worker that answered the console's last ping, and when that was."""
    console = wiring.of(request)
    nodes, heard = await run_in_threadpool(console.workers)
    may_restart = acting.may(viewer, COMMAND)
    places = await run_in_threadpool(environments.known, console) if may_restart else []
    return render(
        request,
        "workers.html",
        viewer,
        nodes=[n.as_dict() for n in nodes],
        heard=heard.strftime("%H:%M:%S UTC"),
        places=[e for e in places if e.name != "local"],
    )


def restart_arguments(env: str, limit: str, inventory_dir: Path | None) -> dict[str, Any]:
    """The arguments as `invoke workers.restart --env E --limit H` binds them."""
    return {
        "nodes": "w1",
        "queues": ",".join(QUEUES),
        "concurrency": "2",
        "timeout": "60",
        "env": env,
        "limit": limit,
        "check": False,
        "inventory": str(inventory_dir or ""),
        "json": False,
    }


async def restart(request: Request, viewer: Viewer) -> Response:
    """Restart an environment's workers gracefully, host by host (all, or the one chosen)."""
    console = wiring.of(request)
    form = await read_form(request)
    env = environment_name(str(form.get("env") or "").strip())
    if env == "local":
        raise InvalidRequest(
            "this page restarts an inventory environment's worker hosts; this machine's own "
            "nodes restart with `invoke workers.restart`"
        )
    limit = str(form.get("limit") or "").strip()
    if len(limit) > 200:
        raise InvalidRequest(f"host {shown(limit)}: choose one of the environment's hosts")
    typed = restart_arguments(env, limit, console.inventory_dir)
    asked = service.RunRequest(
        BOOK, env, limit or None, check=False, inventory_dir=console.inventory_dir
    )

    def work(listener: Any, say: background.Say) -> object:
        return service.run_book(console.app, asked, console.environ, listener)

    run_id = await background.start(console, viewer, COMMAND, typed, work)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)
