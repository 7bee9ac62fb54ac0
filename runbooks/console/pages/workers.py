"""Workers: each node's queues, release, active and reserved tasks, uptime (`invoke
workers.status`, the same `celery_app.ops.workers.status` over the broker, asked in the
background: runbooks/console/watch.py). Read-only."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render


async def worker_status(request: Request, viewer: Viewer) -> Response:
    """Every worker that answered the console's last ping, and when that was."""
    nodes, heard = await run_in_threadpool(wiring.of(request).workers)
    return render(
        request,
        "workers.html",
        viewer,
        nodes=[n.as_dict() for n in nodes],
        heard=heard.strftime("%H:%M:%S UTC"),
    )
