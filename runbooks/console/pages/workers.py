"""Workers: each node's queues, release, active and reserved tasks, uptime (`invoke
workers.status`, the same `celery_app.ops.workers.status` over the broker). Read-only."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.ops import workers
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render


async def worker_status(request: Request, viewer: Viewer) -> Response:
    """Every worker that answers within the console's workers timeout."""
    console = wiring.of(request)
    nodes = await run_in_threadpool(workers.status, console.celery, console.workers_timeout)
    return render(request, "workers.html", viewer, nodes=[n.as_dict() for n in nodes])
