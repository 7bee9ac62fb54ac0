"""Overview: the `invoke status` screen (the same `celery_app.ops.status.collect` value)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.ops.redis_facts import Endpoint
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render


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
    return render(request, "overview.html", viewer, s=view(status.as_dict()))
