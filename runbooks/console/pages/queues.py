"""Queues: each queue's waiting and unacked messages and their oldest ages (`invoke queue.size`,
the same `celery_app.ops.queues.queue_stats` on the broker role), and charts of the last hours
from the samples the console keeps (`celery_app.ops.queue_samples`). Read-only."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.infra.keyspace import QUEUES
from celery_app.inputs import shown
from celery_app.ops import queue_samples, queues
from celery_app.ops.queue_samples import Sample
from runbooks.console import chart, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render

HOURS = ("1", "6", "24")  # the chart's windows (samples are kept 24 h)
DEFAULT_HOURS = "6"


def window(request: Request) -> int:
    """`?hours=`: one of HOURS; InvalidRequest (400) naming them otherwise."""
    hours = request.query_params.get("hours", DEFAULT_HOURS)
    if hours not in HOURS:
        raise InvalidRequest(f"hours: expected one of {', '.join(HOURS)}, got {shown(hours)}")
    return int(hours)


def age_of(count: float | None, age: float | None) -> float | None:
    """An oldest-age value to draw: 0 for an empty queue, None (a gap) where unknown."""
    return 0.0 if count == 0 else age


def charts(samples: list[Sample], start: float, end: float) -> list[chart.Chart]:
    """Waiting, unacked, oldest waiting and oldest unacked: one line per queue each."""

    def points(name: str, age_of_count: str | None = None) -> list[tuple[str, list[Any]]]:
        series = []
        for queue in QUEUES:
            pts = []
            for s in samples:
                if queue not in s.queues:
                    continue
                value = s.value(queue, name)
                if age_of_count is not None:
                    value = age_of(s.value(queue, age_of_count), value)
                pts.append((s.at, value))
            series.append((queue, pts))
        return series

    def draw(id: str, title: str, name: str, count_of: str | None = None) -> chart.Chart:
        counting = count_of is None
        return chart.chart(
            id,
            title,
            points(name, count_of),
            start,
            end,
            chart.count if counting else chart.duration,
            chart.COUNT_STEPS if counting else chart.AGE_STEPS,
        )

    return [
        draw("chart-waiting", "Waiting messages", "waiting"),
        draw("chart-unacked", "Unacked messages", "unacked"),
        draw("chart-oldest-waiting", "Oldest waiting message's age", "oldest_waiting", "waiting"),
        draw("chart-oldest-unacked", "Oldest unacked message's age", "oldest_unacked", "unacked"),
    ]


async def queue_sizes(request: Request, viewer: Viewer) -> Response:
    """Per queue: waiting, unacked, the oldest waiting and unacked message's age; charts of
    the last `?hours=` (1, 6 or 24) from the kept samples."""
    hours = window(request)
    console = wiring.of(request)
    broker = console.app.redis("broker")

    def read() -> tuple[list[queues.QueueStats], list[Sample], float]:
        now = time.time()
        stats = queues.queue_stats(broker, clock=lambda: now)
        return stats, queue_samples.read(broker, console.app.keyspace, now - hours * 3600), now

    stats, samples, now = await run_in_threadpool(read)
    return render(
        request,
        "queues.html",
        viewer,
        queues=[s.as_dict() for s in stats],
        hours=hours,
        windows=HOURS,
        samples=samples,
        span=[dt.datetime.fromtimestamp(s.at, dt.UTC) for s in samples[:1] + samples[-1:]],
        charts=charts(samples, now - hours * 3600, now) if samples else [],
    )
