"""Queues: each queue's waiting and unacked messages and their oldest ages (`invoke queue.size`,
the same `celery_app.ops.queues.queue_stats` on the broker role). Read-only."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.ops import queues
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render


async def queue_sizes(request: Request, viewer: Viewer) -> Response:
    """Per queue: waiting, unacked, the oldest waiting and unacked message's age."""
    console = wiring.of(request)
    stats = await run_in_threadpool(queues.queue_stats, console.app.redis("broker"))
    return render(request, "queues.html", viewer, queues=[s.as_dict() for s in stats])
