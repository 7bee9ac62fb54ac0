"""Workers: each node's queues, release, active and reserved tasks, uptime (`invoke
workers.status`, the same `celery_app.ops.workers.status` over the broker, asked in the
background: runbooks/console/watch.py); and, for an operator, a graceful restart, as
`invoke workers.restart` does it, in a background thread (the POST redirects to the record):

- an inventory environment's workers, all hosts or one (`--env E [--limit HOST]`): the
  workers-restart runbook;
- `local`, this machine's node w1 under var/run (`invoke workers.restart`, its defaults), only
  while it runs: from a browser, a restart never starts a worker the machine did not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest
from celery_app.infra.keyspace import QUEUES
from celery_app.inputs import environment_name, shown
from celery_app.ops import workers
from runbooks import service
from runbooks.console import acting, background, environments, wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import read_form
from runbooks.console.templating import render
from runbooks.console.wiring import Console
from runbooks.deploy import layout
from runbooks.engine import history

COMMAND = "workers.restart"
BOOK = "workers-restart"
LOCAL_NODES = ["w1"]  # the command's default --nodes, --queues (all), --concurrency 2


def local_supervisor(console: Console) -> workers.MultiSupervisor:
    """This machine's nodes as `invoke workers.restart` finds them; the nodes it starts get the
    console's environment."""
    var_dir = console.app.settings.var_dir
    return layout.local_supervisor(var_dir, QUEUES, 2, console.environ)


async def worker_status(request: Request, viewer: Viewer) -> Response:
    """Every worker that answered the console's last ping, and when that was."""
    console = wiring.of(request)
    nodes, heard = await run_in_threadpool(console.workers)
    may_restart = acting.may(viewer, COMMAND)
    places = await run_in_threadpool(environments.known, console) if may_restart else []
    here = bool(places) and bool(local_supervisor(console).running(LOCAL_NODES))
    return render(
        request,
        "workers.html",
        viewer,
        nodes=[n.as_dict() for n in nodes],
        heard=heard.strftime("%H:%M:%S UTC"),
        places=[e for e in places if e.name != "local" or here],
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
    limit = str(form.get("limit") or "").strip()
    if len(limit) > 200:
        raise InvalidRequest(f"host {shown(limit)}: choose one of the environment's hosts")
    typed = restart_arguments(env, limit, console.inventory_dir)
    work = restart_here(console) if env == "local" else restart_there(console, env, limit)
    run_id = await background.start(console, viewer, COMMAND, typed, work)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


def restart_there(console: Console, env: str, limit: str) -> background.Work:
    """`invoke workers.restart --env E [--limit H]`: the workers-restart runbook."""
    asked = service.RunRequest(
        BOOK, env, limit or None, check=False, inventory_dir=console.inventory_dir
    )

    def work(listener: Any, say: background.Say) -> object:
        return service.run_book(console.app, asked, console.environ, listener)

    return work


def restart_here(console: Console) -> background.Work:
    """`invoke workers.restart`: this machine's w1, refused unless it runs."""
    supervisor = local_supervisor(console)
    if not supervisor.running(LOCAL_NODES):
        raise InvalidRequest(
            f"{', '.join(LOCAL_NODES)} does not run on this machine: the console restarts only "
            "running workers (start one with `invoke workers.start`)"
        )

    def work(listener: Any, say: background.Say) -> object:
        with history.recording(
            console.app.sessions,
            COMMAND,
            environment="local",
            arguments={"nodes": LOCAL_NODES},
            redactor=console.redactor,
        ) as record:
            report = workers.restart(console.celery, supervisor, LOCAL_NODES, progress=say)
            record.message = report.summary()
        return report

    return work
