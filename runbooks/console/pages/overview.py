"""Overview: the `invoke status` screen (the same `celery_app.ops.status.collect` value), live:
the page reloads itself every REFRESH seconds (a meta refresh: no script), as often as the
console pings the workers, like `watch invoke status`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.ops.redis_facts import Endpoint
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render

REFRESH = 5  # seconds between reloads of the page


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def view(status: dict[str, Any]) -> dict[str, Any]:
    """The status value with what the template shows computed (server labels, sizes)."""
    redis = [
        {
            **r,
            "server": Endpoint.parse(r["target"]).instance,
            "memory": mib(r["used_memory"]),
            "limit": mib(r["maxmemory"]) if r["maxmemory"] else "no limit",
        }
        for r in status["redis"]
    ]
    return {**status, "redis": redis}


async def overview(request: Request, viewer: Viewer) -> Response:
    """The platform on one screen: Redis, database, workers, queues, failures, outbox, ledger."""
    status = await run_in_threadpool(wiring.of(request).status)
    return render(
        request,
        "overview.html",
        viewer,
        s=view(status.as_dict()),
        refresh=REFRESH,
        read_at=dt.datetime.now(dt.UTC).strftime("%H:%M:%S"),
    )
